"""The backend: lowering of the vector-field form to JAX source, the emitted module, training defaults."""
