"""Train the piano transcriber: `accelerate launch train_transcriber.py --config FILE --data CACHE --out RUN_DIR`.

Thin entry point; the work is in audiogen.transcriber_task and audiogen.training. The config's
midi_dir names the MAESTRO-layout folder with each cached piece's MIDI beside its audio (the
note labels). Any accelerate option goes before the script name.

One live trainer per run folder (RUN/trainer.lock); --resume continues RUN/checkpoints/latest with
the run's own config (--help lists what may change). Exit status: 0 trained, 2 a bad option or
input (one line), 3 the machine failed the run (disk full, out of memory, NaN steps), 130 interrupted.
"""

import sys

from audiogen.tasks import run_trainer

if __name__ == "__main__":
    sys.exit(run_trainer("transcriber"))
