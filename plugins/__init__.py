"""Built-in curation plugins of curate, installed as `curate.plugins`.

Each module here is a plugin registered through the same hooks a third-party plugin uses; the
list lives in `curate.pluginmanager.BUILTIN_PLUGINS`.
"""
