"""Running the service: scheduler (APScheduler only triggers the steps), logs, metrics,
progress (a terminal progress bar), failures (steps that failed, for ``status``).

The scheduler sits on top of ``service``; the others import only db, config and errors.
"""
