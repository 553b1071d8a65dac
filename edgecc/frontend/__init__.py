"""Every model enters by one ONNX door: ONNX files, Hugging Face folders and built-in architectures
(exported with torch.onnx), their input specifications, and the import into Relax."""

from edgecc.frontend.builtin import BUILTIN_MODELS, BuiltinModel, builtin_model
from edgecc.frontend.export import export_builtin, export_hf_folder

__all__ = ["BUILTIN_MODELS", "BuiltinModel", "builtin_model", "export_builtin", "export_hf_folder"]
