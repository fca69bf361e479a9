"""`python -m selfsup ...`: the `selfsup` command, for launchers that run a module (`torchrun
--nproc_per_node=N -m selfsup pretrain ...`)."""

import sys

from selfsup.cli import main

sys.exit(main())
