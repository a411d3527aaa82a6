"""``wsprof tune``: measure the choices a user can make, on the user's own messages."""
