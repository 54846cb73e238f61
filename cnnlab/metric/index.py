"""An embedding index: unit vectors of images, searched by cosine similarity, stored without pickle.

The file is one safetensors file: the tensor ``embeddings`` (N x D float32) and, as its JSON metadata,
the image paths and what embedded them (architecture, checkpoint, dimension). Search is exact: faiss's
inner-product flat index when faiss-cpu is installed, otherwise a matrix product and ``topk`` in torch;
both return the same neighbours (ties aside). Distances are Euclidean between unit vectors,
sqrt(2 - 2 cos).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from ..errors import DataError

FORMAT = "cnnlab-embedding-index/1"


def have_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class EmbeddingIndex:
    """N embeddings (unit rows) with a name (a path) each."""

    embeddings: torch.Tensor  # N x D float32
    names: list[str]
    info: dict = field(default_factory=dict)  # what embedded them: arch, checkpoint, embedding_dim

    def __len__(self) -> int:
        return len(self.names)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def add(self, embeddings: torch.Tensor, names: Sequence[str]) -> int:
        """Add the embeddings of ``names`` not indexed yet (a name seen again replaces its vector); the count added."""
        if embeddings.ndim != 2 or (len(self) and embeddings.shape[1] != self.dim):
            raise DataError(f"the index holds {self.dim}-D embeddings, not {tuple(embeddings.shape)}")
        position = {n: i for i, n in enumerate(self.names)}
        rows, new = self.embeddings.clone() if len(self) else torch.zeros(0, embeddings.shape[1]), []
        fresh, fresh_names = [], []
        for vector, name in zip(embeddings.float(), names):
            if name in position:
                rows[position[name]] = vector
            else:
                fresh.append(vector)
                fresh_names.append(name)
                position[name] = len(position)
        self.embeddings = torch.cat([rows, torch.stack(fresh)]) if fresh else rows
        self.names = self.names + fresh_names
        return len(fresh_names)

    def search(self, queries: torch.Tensor, k: int = 5, backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` nearest indexed items of each query (Q x D): (indices Q x k, distances Q x k), nearest first."""
        if len(self) == 0:
            raise DataError("the index is empty")
        k = min(int(k), len(self))
        if k < 1:
            raise DataError("k must be at least 1")
        queries = torch.nn.functional.normalize(queries.float(), dim=1)
        if queries.shape[1] != self.dim:
            raise DataError(f"queries are {queries.shape[1]}-D, the index {self.dim}-D (another model embedded it?)")
        if backend == "auto":
            backend = "faiss" if have_faiss() else "torch"
        if backend == "faiss":
            import faiss

            flat = faiss.IndexFlatIP(self.dim)
            flat.add(self.embeddings.contiguous().numpy())
            sims, index = flat.search(queries.contiguous().numpy(), k)
            sims, index = torch.from_numpy(sims), torch.from_numpy(index).long()
        elif backend == "torch":
            sims, index = (queries @ self.embeddings.T).topk(k, dim=1)
        else:
            raise DataError(f"search backend must be auto, faiss or torch, not '{backend}'")
        return index, torch.sqrt((2 - 2 * sims).clamp_min(0))

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save

        from ..io import atomic_write_bytes

        path = Path(path)
        meta = {"format": FORMAT, "names": json.dumps(self.names), "info": json.dumps(self.info)}
        atomic_write_bytes(path, save({"embeddings": self.embeddings.contiguous().float()}, metadata=meta))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "EmbeddingIndex":
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise DataError(f"index '{path}' does not exist (cnnlab index build makes one)")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                embeddings = f.get_tensor("embeddings") if "embeddings" in f.keys() else None
        except (SafetensorError, OSError, ValueError) as e:
            raise DataError(f"'{path}' is not an embedding index: {e}") from None
        if meta.get("format") != FORMAT or embeddings is None:
            raise DataError(f"'{path}' is not an embedding index (format {meta.get('format')!r}, expected {FORMAT})")
        try:
            names, info = json.loads(meta["names"]), json.loads(meta.get("info", "{}"))
        except (KeyError, ValueError) as e:
            raise DataError(f"'{path}': damaged index metadata ({e})") from None
        if embeddings.ndim != 2 or len(names) != len(embeddings):
            raise DataError(f"'{path}': {len(names)} names for embeddings of shape {tuple(embeddings.shape)}")
        return cls(embeddings.float(), list(names), dict(info))
