"""The `generate` stage and its built-in strategies: self-instruct, answer, augment, template.

The openai client loads only when a generate stage runs."""

from curate import hookimpl
from curate.plugins.generate.answer import AnswerPrompts
from curate.plugins.generate.augment import AugmentPrompts
from curate.plugins.generate.self_instruct import SelfInstruct
from curate.plugins.generate.stage import GenerateStage
from curate.plugins.generate.template import TemplatePrompts


@hookimpl
def register_stages(register):
    register(GenerateStage)


@hookimpl
def register_generation_strategies(register):
    for strategy in (SelfInstruct, AnswerPrompts, AugmentPrompts, TemplatePrompts):
        register(strategy)
