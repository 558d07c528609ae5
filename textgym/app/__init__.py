"""The application layer: what runs textgym's library and agents for a person at a terminal.

``textgym/app`` sits above both the environment library (``textgym.envs``, ``rewards``, ``models``,
``data``, ``eval``, ``tasks``, which never import ``agents``) and the agents. Inside, four layers,
each importing only from those below it (``tests/app/test_structure.py`` checks):

1. configurations and file utilities: :mod:`textgym.app.config` (one dataclass per command, the
   shared ``sft`` and ``rl`` sections, one validator; imports nothing heavy, so ``textgym --help``
   and argument errors answer at once) and :mod:`textgym.app.files` (atomic writes and folders,
   fresh processes, memory, the CPU's name and flags);
2. steps: :mod:`textgym.app.steps` (supervised fine-tuning, a reward model, the RL run's config,
   prompts), the RL run itself (:mod:`textgym.app.harness`, also ``textgym train``), and feedback
   collection (:mod:`textgym.app.feedback`, :mod:`textgym.app.web`);
3. orchestrators, siblings that share steps and never import each other: the RLHF demo
   (:mod:`textgym.app.pipeline`), the iterative RLHF loop (:mod:`textgym.app.loop`),
   personalization (:mod:`textgym.app.personalize`), the benchmark runner
   (:mod:`textgym.app.bench`) and the reward over-optimisation map
   (:mod:`textgym.app.overoptimization`);
4. the command line (:mod:`textgym.app.cli`).
"""
