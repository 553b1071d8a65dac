"""The deployable folder: manifest (inputs, outputs, target, hashes) and the loader that runs it."""
