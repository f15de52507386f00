"""Train the vocoder: `accelerate launch train_vocoder.py --config FILE --data CACHE --out RUN_DIR`.

Thin entry point; the work is in audiogen.tasks and audiogen.training. Any accelerate option
(--num_processes, --multi_gpu, --mixed_precision, --config_file for multi-node) goes before the
script name.
"""

import sys

from audiogen.tasks import run_trainer

if __name__ == "__main__":
    sys.exit(run_trainer("vocoder"))
