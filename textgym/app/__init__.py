"""The application layer: what runs textgym's library and agents for a person at a terminal.

``textgym/app`` sits above both the environment library (``textgym.envs``, ``rewards``, ``models``,
``data``, ``eval``, ``tasks``, which never import ``agents``) and the agents: the run harness
(:mod:`textgym.app.harness`, ``textgym train``), the RLHF demo (:mod:`textgym.app.pipeline`), the
benchmark runner (:mod:`textgym.app.bench`), feedback collection (:mod:`textgym.app.feedback`,
:mod:`textgym.app.web`), the iterative RLHF loop (:mod:`textgym.app.loop`) and the command line
(:mod:`textgym.app.cli`). Their configurations live in :mod:`textgym.app.config`, which imports
nothing heavy, so ``textgym --help`` and argument errors answer at once.
"""
