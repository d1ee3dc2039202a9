"""Installs avips_jax: amortized variational inference by policy search for diverse IK."""

import setuptools

# Runtime ranges that are known to install and work together (exact pins: constraints.txt).
INSTALL_REQUIRES = [
    "jax>=0.10.2,<0.11",
    "flax>=0.12.8,<0.13",
    "optax>=0.2.8,<0.3",
    "distrax>=0.1.9,<0.2",
    "tfp-nightly",  # distrax's TFP backend; distrax needs a JAX-compatible nightly.
    "chex>=0.1.92,<0.2",
    "ml-collections>=1.1.0,<2",
    "absl-py>=2.3",
    "orbax-checkpoint>=0.12.8,<0.13",
    "tensorboardX>=2.6",  # writes the TensorBoard logs (the viewer is the `tensorboard` extra)
    "numpy>=2.0",
    "scipy>=1.14",
    "matplotlib>=3.9",
    "tqdm>=4.66",
    # Robot files for Panda and TALOS (URDF + inertials); meshes are never read.
    "example-robot-data==6.0.0",
]

# MuJoCo's MJCF parser and compiler, for robot files in MJCF (avips_jax.kinematics.mjcf); the
# core wheel needs only numpy (the `mujoco` wheel adds its viewer, glfw and PyOpenGL).
MJCF = ["mujoco-core>=4.0,<5"]

EXTRAS_REQUIRE = {
    "cuda": ["jax[cuda12]>=0.10.2,<0.11"],
    "mjcf": MJCF,
    "tensorboard": ["tensorboard>=2.20"],  # the viewer: tensorboard --logdir runs/
    "dev": MJCF
    + [
        "tensorboard>=2.20",  # the tests read the event files back
        "pytest>=8",
        "pytest-timeout>=2.3",
        "pytest-xdist>=3.6",  # scripts/test.sh runs the suite on every core (2 in CI)
        "pin>=3.7",  # pinocchio: the reference FK / CoM in tests and benchmarks.
        "yourdfpy>=0.0.56",  # second, independent URDF FK reference.
        "ruff>=0.6",
        # Executes notebooks/quickstart.ipynb in the tests (tests/test_notebook.py).
        "nbclient>=0.10",
        "nbformat>=5.10",
        "ipykernel>=6.29",
    ],
}

setuptools.setup(
    name="avips_jax",
    version="0.1.0",
    description=(
        "Amortized Variational Inference by Policy Search: conditional Gaussian mixtures"
        " that predict many diverse inverse-kinematics solutions in one network call."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=setuptools.find_packages(include=["avips_jax", "avips_jax.*"])
    + ["avips_jax.urdf", "avips_jax.experiments", "avips_jax.experiments.configs"],
    # The authored robot files live in the top-level urdf/ folder and ship as avips_jax/urdf; the
    # command-line programs and their configs (experiments/) ship as avips_jax.experiments.
    package_dir={
        "avips_jax.urdf": "urdf",
        "avips_jax.experiments": "experiments",
        "avips_jax.experiments.configs": "experiments/configs",
    },
    entry_points={
        "console_scripts": [
            "avips-train = avips_jax.experiments.train:cli",
            "avips-evaluate = avips_jax.experiments.evaluate:cli",
            "avips-compare = avips_jax.experiments.compare:cli",
            "avips-solve = avips_jax.solve:cli",
        ]
    },
    # The pretrained models are orbax run directories (scripts/make_pretrained.sh).
    package_data={
        "avips_jax.urdf": ["*.urdf"],
        "avips_jax.pretrained": ["*/*.json", "*/*.md", "*/checkpoints/**/*"],
    },
    python_requires=">=3.11",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
)
