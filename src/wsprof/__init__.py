"""wsprof: where do the microseconds of one real-time message go?"""

__version__ = "0.1.0"
