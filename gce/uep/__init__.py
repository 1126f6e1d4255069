"""The user endpoint (UEP): a child of the manager that runs tasks on an engine."""
