"""Neighbour sampling on the training interaction graph (GAL-Rec's 1-hop and 2-hop prompt context).

Built from the training split's interaction matrix only, so no sampled neighbour can come from a
validation or test interaction.
"""

import torch


class NeighbourSampler:
    """Random neighbours on one side of the training interaction matrix, vectorised over a batch.

    ``matrix`` is a SciPy CSR matrix, rows the nodes sampled from (users or items), columns their
    neighbours; RecBole's ``inter_matrix`` holds each (user, item) pair once.
    """

    def __init__(self, matrix):
        self.indptr = torch.from_numpy(matrix.indptr).long()
        self.indices = torch.from_numpy(matrix.indices).long()

    def degree(self, nodes):
        return self.indptr[nodes + 1] - self.indptr[nodes]

    def pick(self, nodes, generator):
        """One uniform neighbour per node (the node must have one)."""
        offset = (torch.rand(len(nodes), generator=generator) * self.degree(nodes)).long()
        return self.indices[self.indptr[nodes] + offset]

    def sample(self, nodes, n, generator, exclude=None):
        """Up to ``n`` distinct neighbours per node, in random order: ids [B, n] and mask [B, n].

        ``exclude`` [B] names one neighbour per node to leave out (the held-out target). Real
        neighbours fill each row from the left; the rest is id 0 with mask False.
        """
        degree = self.degree(nodes)
        row = torch.repeat_interleave(torch.arange(len(nodes)), degree)
        row_start = torch.cumsum(degree, 0) - degree
        entry = torch.arange(len(row)) - row_start[row] + self.indptr[nodes][row]
        neighbours = self.indices[entry]
        # Sorting by row + a random key in [0, 1) shuffles within each row; the excluded entry gets
        # key >= 1, so it sorts last in its row and is dropped below.
        key = torch.rand(len(row), generator=generator)
        if exclude is not None:
            key = key + (neighbours == exclude[row]).float()
        order = torch.argsort(row * 3 + key)
        row, neighbours, key = row[order], neighbours[order], key[order]
        rank = torch.arange(len(row)) - row_start[row]
        keep = (rank < n) & (key < 1)
        ids = torch.zeros(len(nodes), n, dtype=torch.long)
        mask = torch.zeros(len(nodes), n, dtype=torch.bool)
        ids[row[keep], rank[keep]] = neighbours[keep]
        mask[row[keep], rank[keep]] = True
        return ids, mask

    def walk(self, via, via_mask, n, generator, centre):
        """``n`` one-step walks from each row's real ``via`` nodes (chosen uniformly): ids and mask [B, n].

        ``self`` must map the ``via`` nodes back to the centre's side; walks that end on ``centre``
        [B], or start from a row without real ``via`` nodes, are masked out.
        """
        count = via_mask.sum(1, keepdim=True)
        slot = (torch.rand(len(via), n, generator=generator) * count).long().clamp(max=via.shape[1] - 1)
        start = via.gather(1, slot)
        degree = self.degree(start)
        offset = (torch.rand(start.shape, generator=generator) * degree).long()
        ids = self.indices[(self.indptr[start] + offset).clamp(max=len(self.indices) - 1)]
        mask = (count > 0) & (degree > 0) & (ids != centre.unsqueeze(1))
        return ids.masked_fill(~mask, 0), mask
