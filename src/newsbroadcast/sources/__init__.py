"""The world -> ArticleDraft, read only: base (the Source protocol), http (the one fetcher),
feed, html, sitemap, sql, pagemeta, dates, registry (a source's adapter).

May import config and errors. Nothing of articles, planning or distribution.
"""
