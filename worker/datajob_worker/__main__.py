"""``python -m datajob_worker``: the process that runs in every worker pod."""

import sys

from .agent import main

sys.exit(main())
