"""A plugin with a deliberately slow stage, so a test can kill a run in the middle of it."""

import time
from dataclasses import dataclass

from curate import hookimpl
from curate.options import option
from curate.stages import Filter, Reject


@dataclass
class SlowOptions:
    seconds_per_record: float = option(0.005, min=0)


class SlowStage(Filter):
    name = "slow"
    Options = SlowOptions

    def check(self, record):
        time.sleep(self.options.seconds_per_record)
        if record.response.endswith("7."):
            return Reject("ends-in-seven", "the response ends in 7")
        return None


class SlowParallelStage(SlowStage):
    """The same check in `[run] workers` processes, two records a batch."""
    name = "slow-parallel"
    parallel = True
    batch_size = 2


@hookimpl
def register_stages(register):
    register(SlowStage)
    register(SlowParallelStage)


def main():
    """`curate` with this plugin registered, as if it were installed."""
    import sys

    from curate.cli import main as curate_main
    from curate.pluginmanager import plugins_registered

    with plugins_registered(("slow_stage", sys.modules[__name__])):
        curate_main()


if __name__ == "__main__":
    main()
