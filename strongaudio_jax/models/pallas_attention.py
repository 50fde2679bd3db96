"""Flash attention on TPU: the Pallas kernel of jax.experimental.pallas.ops.tpu.

XLA cannot partition a Pallas kernel, so under a mesh it runs inside shard_map: examples
split over the data-parallel axes, heads over 'tensor' (as the projections are sharded).
Padding is expressed as segment ids (real tokens 1, padding 0): a real query never attends
to a padding key. Token counts are padded to a multiple of 128, the kernel's tile.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from strongaudio_jax.parallel import mesh as mesh_lib


def attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
    """q, k, v [B, N, H, Dh], mask [B, N] -> [B, N, H, Dh]."""
    from jax.experimental.pallas.ops.tpu import flash_attention as fa

    scale = q.shape[-1] ** -0.5
    n = q.shape[1]
    pad = -n % 128  # the kernel tiles tokens by 128: pad with masked tokens
    if pad:
        q, k, v = (jnp.pad(x, ((0, 0), (0, pad), (0, 0), (0, 0))) for x in (q, k, v))
        mask = jnp.pad(mask, ((0, 0), (0, pad)))
    block = max(b for b in (512, 256, 128) if (n + pad) % b == 0)
    sizes = fa.BlockSizes(block_q=block, block_k_major=block, block_k=block, block_b=1,
                          block_q_major_dkv=block, block_k_major_dkv=block, block_k_dkv=block,
                          block_q_dkv=block, block_k_major_dq=block, block_k_dq=block,
                          block_q_dq=block)

    def kernel(q, k, v, seg):
        return fa.flash_attention(q, k, v, segment_ids=fa.SegmentIds(seg, seg), sm_scale=scale,
                                  block_sizes=sizes)

    q, k, v = (x.transpose(0, 2, 1, 3) for x in (q, k, v))  # the kernel's [B, H, N, Dh]
    seg = mask.astype(jnp.int32)
    mesh = mesh_lib.current_mesh()
    if mesh is not None and mesh.size > 1:
        batch = mesh_lib.logical_to_spec(("batch",), mesh, q.shape[:1])[0]
        heads = mesh_lib.logical_to_spec(("heads",), mesh, q.shape[1:2])[0]
        spec = P(batch, heads)
        kernel = jax.shard_map(kernel, mesh=mesh, in_specs=(spec, spec, spec, P(batch)),
                               out_specs=spec, check_vma=False)
    return kernel(q, k, v, seg).transpose(0, 2, 1, 3)[:, :n]
