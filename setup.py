"""xitt: English intermediate-task training and zero-shot transfer with mT5 on XTREME-R.

Pins are exact: the JAX / seqio / TensorFlow ecosystem breaks on drift. `constraints.txt`
pins the transitive dependencies to the set the tests ran with.
"""
import setuptools

INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "tensorstore==0.1.86",
    "seqio==0.0.20",
    "clu==0.0.12",
    "tensorflow==2.21.0",
    "tensorflow-text==2.21.1",
    "tensorflow-datasets==4.9.10",
    "gin-config==0.5.0",
    "sentencepiece==0.2.3",
    "numpy==2.4.6",
    "tensorboard==2.21.0",
    "importlib_resources==7.1.0",
    "msgpack==1.2.4",
    "safetensors==0.8.0",
    # The study report's PNG plots (Agg backend; no display needed).
    "matplotlib==3.11.2",
    # python -m xitt_tasks.prepare: downloads with bounded retries and a progress bar.
    "requests==2.34.2",
    "urllib3==2.8.0",
    "tqdm==4.70.1",
]

EXTRAS = {
    # libtpu for Cloud TPU VMs; set JAX_PLATFORMS=cpu on machines without a TPU.
    "tpu": ["jax[tpu]==0.10.2"],
    "test": ["pytest==9.2.0", "pytest-xdist==3.8.0", "ruff==0.17.6", "seqeval==1.2.2"],
    # Reference implementation for checkpoint parity tests; never a runtime dependency.
    "hf": ["torch==2.13.0", "transformers==5.23.0"],
}

setuptools.setup(
    name="xitt",
    version="0.1.0",
    description="Intermediate-task training for zero-shot cross-lingual transfer with mT5",
    python_requires=">=3.11,<3.13",
    packages=setuptools.find_packages(include=["train", "train.*", "eval", "eval.*",
                                               "xitt_tasks", "xitt_tasks.*",
                                               "study", "study.*", "tpu_scripts",
                                               "tpu_scripts.*", "benchmarks", "benchmarks.*",
                                               "xitt_common", "xitt_common.*"]),
    include_package_data=True,
    package_data={"xitt_tasks": ["data/**/*", "vocab/*"], "study": ["data/*.tsv", "data/*.json"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
)
