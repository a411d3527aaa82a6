"""A small user app package, run by wsprof the way a user's app is (not one of wsprof's stacks)."""
