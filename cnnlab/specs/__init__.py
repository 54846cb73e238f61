"""The papers' architecture tables as plain data (no torch), read by the model builders."""
