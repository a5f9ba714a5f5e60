"""Test environment: CPU only, 8 host devices (a real 2x4 mesh), no network, quiet TF."""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TFDS_DATA_DIR", "/nonexistent-tfds-data-dir")
os.environ.setdefault("NO_GCE_CHECK", "true")

import tensorflow as tf  # noqa: E402

tf.config.set_visible_devices([], "GPU")
