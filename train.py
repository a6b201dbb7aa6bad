"""MindCV-compatible training entry point: ``python train.py --config FILE --data_dir DIR ...``.

Works standalone, under ``torchrun --nproc_per_node N`` and under ``mpirun -n N``.
"""

from res2net.cli import script_main, train_main

if __name__ == "__main__":
    script_main(train_main)
