"""Print the versions of the libraries the workbench depends on most (``make test-latest`` logs them)."""

from importlib.metadata import PackageNotFoundError, version

for name in ("torch", "transformers", "transformer-lens", "nnsight", "numpy", "scikit-learn", "numba", "ray",
             "accelerate", "safetensors", "tokenizers", "gguf"):
    try:
        print(f"{name}=={version(name)}")
    except PackageNotFoundError:
        print(f"{name}: not installed")
