"""`scaling sizes`: the named size ladder, matched in parameters across architectures."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import Json, emit_json, print_frame


def sizes(
    arch: Annotated[
        str | None, typer.Option(help="Only this architecture (llama, tnl, hgrn2, cosformer2).")
    ] = None,
    seq_len: Annotated[int, typer.Option(help="Context length for FLOPs per token.")] = 256,
    as_json: Json = False,
) -> None:
    """List the size ladder: shapes, parameters and training FLOPs per token."""
    from runners.sizes import ladder

    sizes = ladder(arch, seq_len)
    if as_json:
        emit_json({"seq_len": seq_len, "sizes": sizes.to_dict("records")})
        return
    print_frame(sizes, title=f"size ladder (FLOPs per token at seq_len {seq_len})")
