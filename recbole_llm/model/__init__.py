"""Plugin models, one module per model: ``recbole_llm/model/<name>.py`` defines class ``<Name>``."""
