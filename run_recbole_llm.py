"""Train and evaluate a plugin or stock RecBole model: python run_recbole_llm.py --model=GLTA --dataset=ml-100k

Flags are RecBole's own; any further --key=value overrides a config entry.
"""

import argparse
import sys

from recbole_llm.errors import RecBoleLLMError
from recbole_llm.quick_start import run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", "-m", type=str, required=True, help="plugin or stock RecBole model name, e.g. LightGCN")
    parser.add_argument("--dataset", "-d", type=str, default="ml-100k", help="dataset name")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated YAML property files")
    parser.add_argument("--nproc", type=int, default=1, help="processes on this machine")
    parser.add_argument("--world_size", type=int, default=-1, help="processes on all machines together")
    parser.add_argument("--ip", type=str, default="localhost", help="address of the rank-0 machine")
    parser.add_argument("--port", type=str, default="5678", help="port of the rank-0 machine")
    parser.add_argument("--group_offset", type=int, default=0, help="global rank of this machine's first process")
    args, overrides = parser.parse_known_args(argv)
    try:
        run(
            args.model,
            args.dataset,
            config_file_list=args.config_files.strip().split(" ") if args.config_files else None,
            nproc=args.nproc,
            world_size=args.world_size,
            ip=args.ip,
            port=args.port,
            group_offset=args.group_offset,
            cmd_args=overrides,
        )
    except RecBoleLLMError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
