"""Built-in architectures: real transformers models exported through torch.onnx."""

from .builtin import BUILTIN_MODELS, BuiltinModel, builtin_model  # noqa: F401
from .export import export_builtin, export_hf_folder  # noqa: F401
