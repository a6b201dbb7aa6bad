"""MindCV-compatible validation entry point: ``python validate.py -c FILE --data_dir DIR --ckpt_path CKPT``."""

from res2net.cli import script_main, validate_main

if __name__ == "__main__":
    script_main(validate_main)
