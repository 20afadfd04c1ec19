"""`bbans evaluate`: every model of the zoo that fits a test set beside the classical
codecs, in bits/dim: what each model says the data costs, and what coding with it costs."""
from bbans import api, bench, measure
from bbans.errors import BbansError
from bbans.models.zoo import figures, is_codec, kind, known, trained_on

# per row: (report key, column title); a VQ-VAE's exact model cost goes in the bound's column
COLUMNS = (("nll_bits_per_dim", "NLL"), ("bound_bits_per_dim", "-ELBO"), ("coded_bits_per_dim", "coded"))
EXTRAS = ("nll_samples", "nll_images", "nll_bound", "solver", "evaluations_per_image", "trace",
          "nll_trace_std_error_bits_per_dim")


def fitting(variant: str) -> list:
    return trained_on(*measure.VARIANTS[variant])


def plan(variants, names=()) -> dict:
    """{data set: the models to evaluate on it}: every model that fits, or of `names`
    those that fit; a data set none of them fits is left out."""
    for name in names:
        known(name)
    todo = {v: [n for n in names if n in fitting(v)] if names else fitting(v) for v in variants}
    missing = set(names).difference(*todo.values())
    if missing:
        raise BbansError(f"model {', '.join(sorted(missing))} is not trained on {' or '.join(variants)}")
    return {v: todo[v] for v in variants if todo[v]}


def model_row(name: str, images, nll_samples: int, nll_images: int, seed: int) -> dict:
    pixels = images.reshape(len(images), -1)
    fig = figures(name, pixels, nll_samples=nll_samples, nll_images=nll_images, seed=seed)
    row = dict(kind=kind(name), nll_bits_per_dim=fig.get("nll_bits_per_dim"),
               bound_bits_per_dim=fig.get("neg_elbo_bits_per_dim", fig.get("model_bits_per_dim")),
               **{k: fig[k] for k in EXTRAS if k in fig})
    if is_codec(name):
        _, report = api.compress(measure.npy_bytes(images), model=name, model_only=True)
        row["coded_bits_per_dim"] = report["bits_per_dim"]
    return row


def run(variant: str, names, n: int = 10000, nll_samples: int = 1000, nll_images: int = 1000, seed: int = 0,
        classical: bool = True) -> dict:
    """The figures of the models `names` and (unless not `classical`) of the classical
    codecs on the first n test images of `variant`; the same for the same seed."""
    images = measure.mnist_test(variant, n)
    rows = {name: model_row(name, images, nll_samples, nll_images, seed) for name in names}
    for name, layout, encode, decode in bench.classical_codecs(images.shape) if classical else ():
        rows[name] = dict(kind="classical", coded_bits_per_dim=bench.classical_row(images, layout, encode, decode)
                          ["bits_per_dim"])
    return dict(images=len(images), seed=seed, rows=rows)


def table(results: dict) -> str:
    lines = []
    for variant, r in results.items():
        width = max(map(len, r["rows"]))
        lines.append(f"{variant}: {r['images']} test images, bits/dim (seed {r['seed']})")
        lines.append(f"  {'model':{width}} {'kind':9}" + "".join(f" {title:>7}" for _, title in COLUMNS))
        for name, row in r["rows"].items():
            cells = "".join(" {:>7}".format("-" if row.get(k) is None else f"{row[k]:.4f}") for k, _ in COLUMNS)
            lines.append(f"  {name:{width}} {row['kind']:9}{cells}")
    return "\n".join(lines)


def plot(results: dict) -> bytes:
    """PNG bar chart: per data set, each row's NLL, -ELBO and coded bits/dim side by side."""
    height = max(len(r["rows"]) for r in results.values())
    fig, axes = bench.panels(len(results), 1.5 + 0.45 * height)
    for ax, (variant, r) in zip(axes, results.items()):
        names = list(r["rows"])[::-1]
        for j, (key, title) in enumerate(COLUMNS):
            values = [r["rows"][name].get(key) for name in names]
            ys = [i + (1 - j) * 0.27 for i, v in enumerate(values) if v is not None]
            bars = ax.barh(ys, [v for v in values if v is not None], height=0.27, label=title)
            ax.bar_label(bars, fmt="%.3f", fontsize=6, padding=2)
        ax.set(yticks=range(len(names)), yticklabels=names, xlabel="bits/dim",
               title=f"{variant}: {r['images']} test images")
        ax.legend(loc="lower right", fontsize=8)
    return bench.png(fig)
