"""An example curate plugin: reads Markdown FAQ files and strips Markdown from answers.

The hook implementations below are all curate needs; the entry point in pyproject.toml names
this module. The classes they register live in their own modules.
"""

from curate import hookimpl

from curate_example_source.faq import FaqMarkdownSource
from curate_example_source.strip import StripMarkdown

__version__ = "0.1.0"


@hookimpl
def register_sources(register):
    register(FaqMarkdownSource)


@hookimpl
def register_stages(register):
    register(StripMarkdown)
