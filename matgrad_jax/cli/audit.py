"""``matgrad audit``: registered derivations and chains, line by line."""

from __future__ import annotations

from ._common import _fail, _x64


def _with_chains(reports, pattern=None, names=None):
    """The chains to show beside ``reports``: those matching ``pattern`` (and in ``names``) and
    every chain a shown derivation names; and the derivations' table rows with the column
    "first wrong line"."""
    from ..audit import audit_chains
    from ..audit.registry_audit import first_wrong_line
    from ..registry import chains, derivations

    by_name = {d.name: d for d in derivations()}
    wanted = {by_name[r.name].chain for r in reports
              if r.name in by_name and by_name[r.name].chain}
    selected = {c.name for c in chains(pattern) if names is None or c.name in names}
    chain_reports = audit_chains(names=selected | wanted)
    done = {c.name: c for c in chain_reports}
    rows, cells = [], {}
    for r in reports:
        row = r.summary_row()
        d = by_name.get(r.name)
        cell = first_wrong_line(done.get(d.chain)) if d is not None and d.chain else "—"
        cells[r.name] = cell
        rows.append({**{k: v for k, v in row.items() if k != "source"},
                     "first wrong line": cell, "source": row["source"]})
    return rows, chain_reports, cells, selected


def _print_chains(chain_reports) -> None:
    from ..audit import chain_row, text_table

    if not chain_reports:
        return
    print("\n== Derivations line by line: the first wrong line of each ==\n")
    print(text_table([chain_row(r) for r in chain_reports],
                     {"first wrong line": 44, "what is wrong there": 52, "source": 40}))


def cmd_audit(args) -> int:
    _x64()
    from .._checks import InputError
    from ..audit import audit_all, chain_row, markdown_table, text_table
    from ..io import atomic_write_json, atomic_write_text
    from ..registry import chains, derivations, load_targets

    before = {c.name: id(c) for c in chains()}
    try:
        names = load_targets(args.targets)
    except InputError as exc:
        return _fail(str(exc))
    new_chains = {c.name for c in chains() if before.get(c.name) != id(c)}
    if args.targets:
        keep = set(names) | ({d.name for d in derivations(builtin=True)} if args.builtin else set())
        keep_chains = new_chains | ({c.name for c in chains(builtin=True)} if args.builtin
                                    else set())
        if not names and not new_chains:
            return _fail(f"{', '.join(args.targets)}: registers no derivation (call "
                         "matgrad_jax.register(...) or register_chain(...), or use "
                         "@matgrad_jax.derivation at import)")
    else:
        keep = {d.name for d in derivations()}
        keep_chains = {c.name for c in chains()}
    try:
        reports = audit_all(args.filter, names=keep)
    except InputError as exc:  # a registration's own mistake: one line, exit 2
        return _fail(str(exc))
    rows, chain_reports, cells, selected = _with_chains(reports, args.filter, keep_chains)
    if not reports and not chain_reports:
        return _fail(f"--filter {args.filter!r}: matches no derivation (names: "
                     f"{', '.join(d.name for d in derivations() if d.name in keep)})")
    if rows:
        print(text_table(rows, {"source": 48, "where it holds": 44, "first wrong line": 36}))
    _print_chains(chain_reports)
    failed = [r for r in reports if not r.passed]
    failed_chains = [r for r in chain_reports if not r.passed]
    print(f"\n{len(reports) - len(failed)} passed, {len(failed)} failed"
          + (f"; chains: {len(chain_reports) - len(failed_chains)} hold, "
             f"{len(failed_chains)} have a wrong line" if chain_reports else ""))
    for r in failed + failed_chains:
        print(f"- {r.name}: {r.message}")
    if args.json:
        # the derivations' reports (each with its chain's first wrong line), then the chains
        # selected by name (a target's own, or those --filter matches)
        atomic_write_json(args.json, [{**r.to_dict(), "first_wrong_line": cells[r.name]}
                                      for r in reports]
                          + [r.to_dict() for r in chain_reports if r.name in selected])
    if args.markdown:
        body = (markdown_table(rows) + "\n\n"
                + (markdown_table([chain_row(r) for r in chain_reports]) + "\n\n"
                   if chain_reports else "")
                + "\n".join(r.to_markdown() for r in reports)
                + "\n".join(r.to_markdown() for r in chain_reports))
        atomic_write_text(args.markdown, body)
    return 1 if (failed or failed_chains) and not args.no_fail else 0
