"""The terminal outputs: the printer for people and the JSON-lines writer for programs."""
