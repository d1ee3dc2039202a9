"""The named random streams of a training run: the `jax.random.fold_in` tags that split one seed
into independent keys.

    loop_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), Stream.CONTEXTS)
    step_key = jax.random.fold_in(loop_key, t)                  # step t's contexts
    add_key = jax.random.fold_in(step_key, Stream.ADD)          # component adding after step t

Every other draw of a step comes from the train state's own key. The values are part of every
recorded result: changing one changes the numbers of every run.
"""

import enum


class Stream(enum.IntEnum):
    """fold_in tags (ints; see the module docstring for the layering)."""

    CONTEXTS = 1  # on PRNGKey(seed): the loop's key, folded with the step index for its contexts
    ADD = 7  # on a step's key: component adding after that step
    REMOVE = 11  # on a step's key: component removal / merging after that step
    LOG = 13  # on a step's key: the diagnostics of a log step
