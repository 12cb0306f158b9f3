"""The WebUI adapter: the only part of InitEdit that imports the WebUI's ``modules.*``."""
