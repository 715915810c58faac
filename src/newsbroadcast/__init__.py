"""newsbroadcast: new articles in, email digests and social posts out, each exactly once."""

__version__ = "0.1.0"
