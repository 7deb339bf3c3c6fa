"""Naive reference losses written from the papers' formulas with explicit Python loops.

Deliberately slow and simple: no shared code with ``modalign.objectives``; each loop follows the
equation in METHODS.md. Inputs are small (B <= ~12).
"""

from __future__ import annotations

import itertools
import math

import torch


def dot(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x * y).sum()


def log_softmax_row(values: list[torch.Tensor], k: int) -> torch.Tensor:
    """log(e^{v_k} / Σ_j e^{v_j}) with a max shift."""
    m = max(float(v.detach()) for v in values)
    denom = sum(torch.exp(v - m) for v in values)
    return values[k] - m - torch.log(denom)


def clip_loss(a, b, s, smoothing=0.0):
    n = a.shape[0]
    total = 0.0
    for direction in range(2):
        x, y = (a, b) if direction == 0 else (b, a)
        for i in range(n):
            row = [s * dot(x[i], y[j]) for j in range(n)]
            for k in range(n):
                target = (1 - smoothing) * (k == i) + smoothing / n
                if target:
                    total = total - target * log_softmax_row(row, k)
    return total / (2 * n)


def clip_multi_positive(a, b, s, pos):
    n = a.shape[0]
    total = 0.0
    for i in range(n):
        row = [s * dot(a[i], b[j]) for j in range(n)]
        ks = [k for k in range(n) if pos[i, k]]
        for k in ks:
            total = total - log_softmax_row(row, k) / len(ks)
    for j in range(n):
        col = [s * dot(a[i], b[j]) for i in range(n)]
        ks = [k for k in range(n) if pos[k, j]]
        for k in ks:
            total = total - log_softmax_row(col, k) / len(ks)
    return total / (2 * n)


def siglip_loss(a, b, s, t):
    n = a.shape[0]
    total = 0.0
    for i in range(n):
        for j in range(n):
            z = s * dot(a[i], b[j]) + t
            y = 1.0 if i == j else -1.0
            total = total - torch.log(torch.sigmoid(y * z))
    return total / n


def dcl_loss(a, b, tau, weighted=False, sigma=0.5, intra=False):
    n = a.shape[0]
    if weighted:
        sims = torch.stack([dot(a[i], b[i]).detach() / sigma for i in range(n)])
        w = [2 - n * torch.exp(sims[i]) / torch.exp(sims).sum() for i in range(n)]
    else:
        w = [1.0] * n
    total = 0.0
    for x, y in ((a, b), (b, a)):
        for i in range(n):
            negs = [dot(x[i], y[j]) / tau for j in range(n) if j != i]
            if intra:
                negs += [dot(x[i], x[j]) / tau for j in range(n) if j != i]
            lse = torch.logsumexp(torch.stack(negs), 0)
            total = total + (-w[i] * dot(x[i], y[i]) / tau + lse) / (2 * n)
    return total


def cwcl_loss(a, b, u, s, reverse="cwcl"):
    n = a.shape[0]
    w = [[1.0 if i == j else 0.5 + 0.5 * float(dot(u[i], u[j])) for j in range(n)] for i in range(n)]
    total = 0.0
    for i in range(n):
        row = [s * dot(a[i], b[j]) for j in range(n)]
        for j in range(n):
            total = total - w[i][j] / sum(w[i]) * log_softmax_row(row, j) / n
    for j in range(n):
        col = [s * dot(b[j], a[i]) for i in range(n)]
        if reverse == "cwcl":
            for i in range(n):
                total = total - w[j][i] / sum(w[j]) * log_softmax_row(col, i) / n
        else:
            total = total - log_softmax_row(col, j) / n
    return total


def mip(*vs):
    prod = vs[0]
    for v in vs[1:]:
        prod = prod * v
    return prod.sum()


def symile_n_squared(reps, s):
    m_count, n = len(reps), reps[0].shape[0]
    total = 0.0
    for m in range(m_count):
        others = [r for k, r in enumerate(reps) if k != m]
        for i in range(n):
            row, pos = [], None
            for combo in itertools.product(range(n), repeat=len(others)):
                if all(c == i for c in combo):
                    pos = len(row)
                row.append(s * mip(reps[m][i], *[o[c] for o, c in zip(others, combo, strict=True)]))
            total = total - log_softmax_row(row, pos) / (n * m_count)
    return total


def symile_n(reps, s, perms):
    """``perms[m][a]``: the permutation used for non-anchor ``a`` when ``m`` is the anchor."""
    m_count, n = len(reps), reps[0].shape[0]
    total = 0.0
    for m in range(m_count):
        others = [(k, r) for k, r in enumerate(reps) if k != m]
        for i in range(n):
            row = []
            for j in range(n):
                if j == i:
                    row.append(s * mip(reps[m][i], *[r[i] for _, r in others]))
                else:
                    row.append(s * mip(reps[m][i], *[r[perms[m][k][j]] for k, r in others]))
            total = total - log_softmax_row(row, i) / (n * m_count)
    return total


def soft_ce(rows: list[list[torch.Tensor]], targets) -> torch.Tensor:
    total = 0.0
    for i, row in enumerate(rows):
        for j in range(len(row)):
            t = float(targets[i][j])
            if t:
                total = total - t * log_softmax_row(row, j)
    return total / len(rows)


def m3co_loss(a, b, perm, betas, tau):
    n = a.shape[0]
    mixed = []
    for i in range(n):
        v = betas[i] * a[i] + (1 - betas[i]) * a[perm[i]]
        mixed.append(v / v.norm())
    t = [[0.0] * n for _ in range(n)]
    for i in range(n):
        t[i][i] += float(betas[i])
        t[i][int(perm[i])] += 1 - float(betas[i])
    z = [[dot(mixed[i], b[j]) / tau for j in range(n)] for i in range(n)]
    zt = [[z[i][j] for i in range(n)] for j in range(n)]
    tt = [[t[i][j] for i in range(n)] for j in range(n)]
    return 0.5 * (soft_ce(z, t) + soft_ce(zt, tt))


def soft_clip_loss(a, b, tau):
    n = a.shape[0]
    q = []
    for i in range(n):
        e = [torch.exp(dot(b[i], b[j]) / tau) for j in range(n)]
        q.append([x / sum(e) for x in e])
    p = [[dot(a[i], b[j]) / tau for j in range(n)] for i in range(n)]
    pt = [[p[i][j] for i in range(n)] for j in range(n)]
    total = 0.0
    for rows in (p, pt):
        for i in range(n):
            for j in range(n):
                total = total - q[i][j] * log_softmax_row(rows[i], j) / (2 * n)
    return total


def slerp_row(x, y, lam):
    theta = torch.acos(dot(x, y))
    return (torch.sin(lam * theta) * x + torch.sin((1 - lam) * theta) * y) / torch.sin(theta)


def m2mix_loss(a, b, lam, tau, tau2, w):
    n = a.shape[0]
    clip = clip_loss(a, b, 1 / tau)
    m = [slerp_row(a[j], b[j], lam) for j in range(n)]
    mix = 0.0
    for x in (a, b):
        for i in range(n):
            row = [(dot(a[i], b[i]) if j == i else dot(x[i], m[j])) / tau2 for j in range(n)]
            mix = mix - log_softmax_row(row, i) / n
    return clip + w * mix


def uniformity(x, t=2.0):
    n = x.shape[0]
    vals = [torch.exp(-t * ((x[i] - x[j]) ** 2).sum()) for i in range(n) for j in range(i + 1, n)]
    return torch.log(sum(vals) / len(vals))


def alignment(a, b, alpha=2.0):
    n = a.shape[0]
    return sum(((a[i] - b[i]) ** 2).sum() ** (alpha / 2) for i in range(n)) / n


def cross_uniformity(a, b, t=2.0):
    n = a.shape[0]
    vals = [torch.exp(-t * ((a[i] - b[j]) ** 2).sum()) for i in range(n) for j in range(n) if i != j]
    return torch.log(sum(vals) / len(vals))


def affinity(s_a, s_b, t_a, t_b, s_s, s_t):
    n = s_a.shape[0]
    total = 0.0
    for direction in range(2):
        for i in range(n):
            if direction == 0:
                st = [s_s * dot(s_a[i], s_b[j]) for j in range(n)]
                te = [float(s_t * dot(t_a[i], t_b[j])) for j in range(n)]
            else:
                st = [s_s * dot(s_b[i], s_a[j]) for j in range(n)]
                te = [float(s_t * dot(t_b[i], t_a[j])) for j in range(n)]
            e = [math.exp(v - max(te)) for v in te]
            p = [v / sum(e) for v in e]
            for j in range(n):
                total = total - p[j] * log_softmax_row(st, j) / (2 * n)
    return total


def feature_distillation(s, t):
    n, d = s.shape
    total = 0.0
    for i in range(n):
        for k in range(d):
            total = total + (s[i, k] - t[i, k]) ** 2 / (2 * n)
    return total


def albef_itc(a, b, a_m, b_m, tau, alpha, q_a=None, q_b=None):
    n = a.shape[0]
    v_all = [a_m[i] for i in range(n)] + ([] if q_a is None else [q_a[k] for k in range(q_a.shape[0])])
    w_all = [b_m[i] for i in range(n)] + ([] if q_b is None else [q_b[k] for k in range(q_b.shape[0])])
    total = 0.0
    for x, x_m, cands in ((a, a_m, w_all), (b, b_m, v_all)):
        for i in range(n):
            mom = [float(dot(x_m[i], c)) / float(tau) for c in cands]
            e = [math.exp(v - max(mom)) for v in mom]
            q = [v / sum(e) for v in e]
            row = [dot(x[i], c) / tau for c in cands]
            for j in range(len(cands)):
                target = alpha * q[j] + (1 - alpha) * (j == i)
                total = total - target * log_softmax_row(row, j) / (2 * n)
    return total
