# Marks ext/wsprof as the wsprof package for cimport (wsprof._histogram, ...).
