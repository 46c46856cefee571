"""Datasets of :class:`~pope_env.problem.Problem` records (MATH, MATH-500, CHAMP,
synthetic arithmetic, user files, Hugging Face datasets) and a registry of named splits."""
