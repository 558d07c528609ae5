"""textgym inside other libraries' trainers: each integration is a module here, with its own optional extra.

Nothing below this package (``textgym.envs``, ``rewards``, ``models``, ...) imports it, and each
module imports its library (``trl``, ...) itself, so the core install stays lean.
"""
