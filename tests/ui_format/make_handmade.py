"""Write the hand-made editor workflows in ``tests/ui_format/handmade/`` (rules templates miss).

Most cases are built by the real frontend: in headless Chromium on a running ComfyUI, each case's
script adds nodes through the LiteGraph API, links them, sets widget values and modes, uses the
frontend's own commands (subgraph conversion, group-node conversion) and saves the graph with
``app.graph.serialize()`` (passed through JSON, as the editor saves it). A few cases are older or
malformed files that today's frontend would not write (``LEGACY``): they are written as they are
in this file. ``handmade/CASES.md`` lists every case with what it covers.

Then record them with ``record_frontend.py --no-templates``.

Usage::

    python tests/ui_format/make_handmade.py --comfyui-url http://127.0.0.1:8188 \\
        [--out tests/ui_format/handmade] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record_frontend import open_frontend

log = logging.getLogger("make_handmade")

HERE = Path(__file__).resolve().parent

# Helpers every case script can use. ``g`` is the root graph, cleared first.
PRELUDE = """
let uuidCount = 0;  // deterministic subgraph ids, so rebuilding gives the same files
crypto.randomUUID = () => '00000000-0000-4000-8000-' + String(++uuidCount).padStart(12, '0');
const g = app.graph; g.clear();
app.canvas.deselectAll && app.canvas.deselectAll();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const add = (type, pos = [0, 0], graph = g) => {
  const n = LiteGraph.createNode(type);
  if (!n) throw new Error('no node type ' + type);
  n.pos = pos; graph.add(n); return n;
};
const W = (n, name) => {
  const w = (n.widgets || []).find((x) => x.name === name);
  if (!w) throw new Error('no widget ' + name + ' on ' + n.type);
  return w;
};
const set = (n, vals) => { for (const [k, v] of Object.entries(vals)) W(n, k).value = v; };
const con = (a, aslot, b, bslot) => {
  const o = typeof aslot === 'string' ? a.findOutputSlot(aslot) : aslot;
  const i = typeof bslot === 'string' ? b.findInputSlot(bslot) : bslot;
  if (o < 0 || i < 0) throw new Error(`no slot ${a.type}.${aslot} -> ${b.type}.${bslot}`);
  const l = a.connect(o, b, i);
  if (!l) throw new Error(`connect failed ${a.type}.${aslot} -> ${b.type}.${bslot}`);
  return l;
};
const groupNode = async (nodes, name) => {
  app.canvas.deselectAll();
  for (const n of nodes) app.canvas.select(n);
  const p = app.extensionManager.command.execute(
    'Comfy.GroupNode.ConvertSelectedNodesToGroupNode');
  let input = null;
  for (let i = 0; i < 50 && !input; i++) {
    await sleep(100); input = document.querySelector('.p-dialog input');
  }
  if (!input) throw new Error('no group name prompt');
  input.value = name; input.dispatchEvent(new Event('input'));
  await sleep(100);
  [...document.querySelectorAll('.p-dialog button')]
    .find((b) => b.innerText.trim() === 'Confirm').click();
  await p; await sleep(300);
  const made = g.nodes.find((n) => n.type === 'workflow>' + name);
  if (!made) throw new Error('group node not made');
  return made;
};
const subgraph = (nodes, graph = g) => graph.convertToSubgraph(new Set(nodes)).node;
const save = () => JSON.parse(JSON.stringify(g.serialize()));
"""

# A subgraph feeding the group node Between, whose output feeds another subgraph (two cases).
_BETWEEN_SUBGRAPHS = """
const e = add('EmptyImage', [0, 0]); set(e, {width: 16, height: 10});
const i1 = add('ImageInvert', [200, 0]); con(e, 0, i1, 0);
const i2 = add('ImageInvert', [400, 0]); con(i1, 0, i2, 0);
const cr = add('ImageCrop', [550, 0]); con(i2, 0, cr, 'image'); set(cr, {width: 8, height: 6});
const i3 = add('ImageInvert', [750, 0]); con(cr, 0, i3, 0);
const s = add('SaveImage', [950, 0]); con(i3, 0, s, 'images'); set(s, {filename_prefix: 'sub'});
subgraph([e, i1]);
subgraph([i3, s]);
await groupNode([i2, cr], 'Between');
"""

# name -> (what it covers, JS body that builds the graph and ends with `return save();`)
CASES: dict[str, tuple[str, str]] = {
    "reroute_chain": (
        "Reroute -> Reroute -> Reroute chain between EmptyImage and ImageInvert; one Reroute fans "
        "out to two outputs; a Reroute with no input feeds a PreviewImage (input dropped).",
        """
const img = add('EmptyImage', [0, 0]); set(img, {width: 64, height: 48});
const r1 = add('Reroute', [300, 0]); const r2 = add('Reroute', [400, 0]);
const r3 = add('Reroute', [500, 0]);
const inv = add('ImageInvert', [650, 0]); const save1 = add('SaveImage', [900, 0]);
const prev = add('PreviewImage', [900, 300]);
con(img, 0, r1, 0); con(r1, 0, r2, 0); con(r2, 0, r3, 0); con(r3, 0, inv, 0);
con(inv, 0, save1, 'images'); con(r2, 0, prev, 'images');
const dangling = add('Reroute', [300, 500]); const prev2 = add('PreviewImage', [600, 500]);
con(dangling, 0, prev2, 'images');
return save();
""",
    ),
    "primitive_multi_target": (
        "One PrimitiveNode feeds width of EmptyImage and width of EmptyLatentImage; another feeds "
        "a STRING widget of two nodes; an unconnected PrimitiveNode is left out.",
        """
const img = add('EmptyImage', [300, 0]); const lat = add('EmptyLatentImage', [300, 300]);
const p = add('PrimitiveNode', [0, 0]);
con(p, 0, img, 'width'); con(p, 0, lat, 'width');
p.widgets[0].value = 128;
const s1 = add('SaveImage', [600, 0]); con(img, 0, s1, 'images');
const s2 = add('SaveImage', [600, 300]);
const inv = add('ImageInvert', [450, 300]); con(img, 0, inv, 0); con(inv, 0, s2, 'images');
const ps = add('PrimitiveNode', [0, 300]);
con(ps, 0, s1, 'filename_prefix'); con(ps, 0, s2, 'filename_prefix');
ps.widgets[0].value = 'prim_prefix';
add('PrimitiveNode', [0, 600]);
return save();
""",
    ),
    "primitive_seed_control": (
        "A PrimitiveNode feeding the seed of two KSamplers (its own control_after_generate "
        "'fixed'); a KSampler whose seed is linked from a PrimitiveInt node (a real node).",
        """
const ck = add('CheckpointLoaderSimple', [0, 0]);
const pos = add('CLIPTextEncode', [300, 0]); const neg = add('CLIPTextEncode', [300, 250]);
set(pos, {text: 'a cat'}); set(neg, {text: 'blurry'});
con(ck, 1, pos, 'clip'); con(ck, 1, neg, 'clip');
const lat = add('EmptyLatentImage', [300, 500]); set(lat, {width: 64, height: 64});
const ks = []; for (let i = 0; i < 3; i++) {
  const k = add('KSampler', [700, i * 400]);
  con(ck, 0, k, 'model'); con(pos, 0, k, 'positive'); con(neg, 0, k, 'negative');
  con(lat, 0, k, 'latent_image'); set(k, {steps: 2 + i, seed: 1000 + i});
  const d = add('VAEDecode', [1000, i * 400]); con(k, 0, d, 0); con(ck, 2, d, 1);
  const s = add('SaveImage', [1200, i * 400]); con(d, 0, s, 'images');
  ks.push(k);
}
const p = add('PrimitiveNode', [300, 800]);
con(p, 0, ks[0], 'seed'); con(p, 0, ks[1], 'seed');
p.widgets[0].value = 424242;
const cw = p.widgets.find((w) => w.name === 'control_after_generate');
if (cw) cw.value = 'fixed';
const pi = add('PrimitiveInt', [300, 1100]); set(pi, {value: 7});
con(pi, 0, ks[2], 'seed');
return save();
""",
    ),
    "seed_control_values": (
        "control_after_generate values on KSampler (fixed, increment, decrement, randomize), "
        "RandomNoise and KSamplerAdvanced; graphToPrompt must not change the seeds.",
        """
const ck = add('CheckpointLoaderSimple', [0, 0]);
const pos = add('CLIPTextEncode', [300, 0]); con(ck, 1, pos, 'clip');
const lat = add('EmptyLatentImage', [300, 300]);
const modes = ['fixed', 'increment', 'decrement', 'randomize'];
modes.forEach((m, i) => {
  const k = add('KSampler', [700, i * 350]);
  con(ck, 0, k, 'model'); con(pos, 0, k, 'positive'); con(pos, 0, k, 'negative');
  con(lat, 0, k, 'latent_image');
  set(k, {seed: 5 + i, control_after_generate: m, cfg: 7.5, denoise: 0.75});
  const d = add('VAEDecode', [1000, i * 350]); con(k, 0, d, 0); con(ck, 2, d, 1);
  const s = add('PreviewImage', [1200, i * 350]); con(d, 0, s, 'images');
});
const ka = add('KSamplerAdvanced', [700, 1500]);
con(ck, 0, ka, 'model'); con(pos, 0, ka, 'positive'); con(pos, 0, ka, 'negative');
con(lat, 0, ka, 'latent_image');
set(ka, {noise_seed: 99, control_after_generate: 'increment', end_at_step: 3});
const d = add('VAEDecode', [1000, 1500]); con(ka, 0, d, 0); con(ck, 2, d, 1);
const s = add('PreviewImage', [1200, 1500]); con(d, 0, s, 'images');
const rn = add('RandomNoise', [0, 1500]);
set(rn, {noise_seed: 123, control_after_generate: 'fixed'});
const pa = add('PreviewAny', [300, 1500]); con(rn, 0, pa, 'source');
return save();
""",
    ),
    "bypass_chain": (
        "Two bypassed (mode 4) ImageInvert in a row between EmptyImage and SaveImage, and a "
        "bypassed node after a Reroute.",
        """
const img = add('EmptyImage', [0, 0]); set(img, {width: 32, height: 32});
const a = add('ImageInvert', [300, 0]); const b = add('ImageInvert', [500, 0]);
const s = add('SaveImage', [700, 0]);
con(img, 0, a, 0); con(a, 0, b, 0); con(b, 0, s, 'images');
a.mode = 4; b.mode = 4;
const r = add('Reroute', [300, 300]); const c = add('ImageInvert', [500, 300]);
const s2 = add('SaveImage', [700, 300]);
con(img, 0, r, 0); con(r, 0, c, 0); con(c, 0, s2, 'images'); c.mode = 4;
set(s2, {filename_prefix: 'second'});
return save();
""",
    ),
    "bypass_type_matching": (
        "Bypassed nodes whose outputs match no input type (VAEDecode: LATENT,VAE -> IMAGE), match "
        "several inputs (ImageBlend image1,image2 -> IMAGE), or a later input "
        "(ImageCompositeMasked; a MASK output) ",
        """
const ck = add('CheckpointLoaderSimple', [0, 0]);
const lat = add('EmptyLatentImage', [0, 300]);
const dec = add('VAEDecode', [300, 300]); con(lat, 0, dec, 0); con(ck, 2, dec, 1); dec.mode = 4;
const s1 = add('SaveImage', [600, 300]); con(dec, 0, s1, 'images');
const i1 = add('EmptyImage', [0, 600]); set(i1, {color: 255});
const i2 = add('EmptyImage', [0, 900]); set(i2, {color: 65280});
const bl = add('ImageBlend', [300, 600]); con(i1, 0, bl, 'image1'); con(i2, 0, bl, 'image2');
bl.mode = 4;
const s2 = add('SaveImage', [600, 600]); con(bl, 0, s2, 'images');
const bl2 = add('ImageBlend', [300, 900]); con(i2, 0, bl2, 'image2'); bl2.mode = 4;
const s3 = add('SaveImage', [600, 900]); con(bl2, 0, s3, 'images');
const cm = add('ImageCompositeMasked', [300, 1200]);
con(i2, 0, cm, 'source'); cm.mode = 4;
const s4 = add('SaveImage', [600, 1200]); con(cm, 0, s4, 'images');
const m = add('ImageToMask', [300, 1500]); con(i1, 0, m, 0); m.mode = 4;
const mi = add('MaskToImage', [600, 1500]); con(m, 0, mi, 0);
const s5 = add('SaveImage', [900, 1500]); con(mi, 0, s5, 'images');
return save();
""",
    ),
    "bypass_by_type": (
        "Bypassed nodes whose matching input is not at the output's slot index: KSampler "
        "(latent_image is input 3), ImageUpscaleWithModel (image is input 1); bypassed nodes "
        "with two outputs: LoraLoader (MODEL, CLIP) and ControlNetApplyAdvanced (positive, "
        "negative); ImageCompositeMasked with only destination linked.",
        """
const ck = add('CheckpointLoaderSimple', [0, 0]);
const lora = add('LoraLoader', [300, 0]); con(ck, 0, lora, 'model'); con(ck, 1, lora, 'clip');
lora.mode = 4;
const pos = add('CLIPTextEncode', [600, 0]); const neg = add('CLIPTextEncode', [600, 250]);
con(lora, 1, pos, 'clip'); con(lora, 1, neg, 'clip'); set(pos, {text: 'pos'});
const cnl = add('ControlNetLoader', [300, 500]); const hint = add('EmptyImage', [300, 700]);
const cn = add('ControlNetApplyAdvanced', [900, 0]);
con(pos, 0, cn, 'positive'); con(neg, 0, cn, 'negative'); con(cnl, 0, cn, 'control_net');
con(hint, 0, cn, 'image'); con(ck, 2, cn, 'vae'); cn.mode = 4;
const lat = add('EmptyLatentImage', [600, 500]); set(lat, {width: 64, height: 64});
const k1 = add('KSampler', [1200, 0]);
con(lora, 0, k1, 'model'); con(cn, 0, k1, 'positive'); con(cn, 1, k1, 'negative');
con(lat, 0, k1, 'latent_image'); set(k1, {seed: 1, control_after_generate: 'fixed', steps: 2});
const k2 = add('KSampler', [1500, 0]);
con(lora, 0, k2, 'model'); con(cn, 0, k2, 'positive'); con(cn, 1, k2, 'negative');
con(k1, 0, k2, 'latent_image'); set(k2, {seed: 2, control_after_generate: 'fixed'});
k2.mode = 4;
const dec = add('VAEDecode', [1800, 0]); con(k2, 0, dec, 0); con(ck, 2, dec, 1);
const um = add('UpscaleModelLoader', [1800, 300]);
const up = add('ImageUpscaleWithModel', [2100, 0]); con(um, 0, up, 'upscale_model');
con(dec, 0, up, 'image'); up.mode = 4;
const s = add('SaveImage', [2400, 0]); con(up, 0, s, 'images');
const cm = add('ImageCompositeMasked', [2100, 400]); con(dec, 0, cm, 'destination');
cm.mode = 4;
const s2 = add('SaveImage', [2400, 400]); con(cm, 0, s2, 'images');
return save();
""",
    ),
    "schema_v1": (
        "The same kind of graph saved in the version-1 schema (links as objects, 'state'), as "
        "LGraph.asSerialisable() writes it; with a Reroute and a bypassed node.",
        """
const img = add('EmptyImage', [0, 0]); set(img, {width: 24});
const r = add('Reroute', [300, 0]); const inv = add('ImageInvert', [400, 0]); inv.mode = 4;
const inv2 = add('ImageInvert', [600, 0]);
const s = add('SaveImage', [800, 0]); set(s, {filename_prefix: 'v1'});
con(img, 0, r, 0); con(r, 0, inv, 0); con(inv, 0, inv2, 0); con(inv2, 0, s, 'images');
return JSON.parse(JSON.stringify(g.asSerialisable()));
""",
    ),
    "muted_nodes": (
        "Muted (mode 2) nodes: an ImageInvert in the middle of a chain (its consumer loses the "
        "input), a muted SaveImage (removed), a muted node behind a bypassed one, a muted "
        "PrimitiveNode target.",
        """
const img = add('EmptyImage', [0, 0]);
const a = add('ImageInvert', [300, 0]); a.mode = 2;
const s = add('SaveImage', [600, 0]); con(img, 0, a, 0); con(a, 0, s, 'images');
const s2 = add('SaveImage', [600, 300]); con(img, 0, s2, 'images'); s2.mode = 2;
const b = add('ImageInvert', [300, 600]); b.mode = 4;
const c = add('ImageInvert', [450, 600]); c.mode = 2;
const s3 = add('SaveImage', [600, 600]); con(img, 0, b, 0); con(b, 0, c, 0);
con(c, 0, s3, 'images');
const p = add('PrimitiveNode', [0, 900]); const img2 = add('EmptyImage', [300, 900]);
con(p, 0, img2, 'height'); p.widgets[0].value = 40; img2.mode = 2;
const s4 = add('PreviewImage', [600, 900]); con(img2, 0, s4, 'images');
return save();
""",
    ),
    "subgraph_nested": (
        "Nested subgraphs made with the frontend's convertToSubgraph: inner (EmptyImage, "
        "ImageInvert) inside outer (inner + SaveImage); a PrimitiveInt outside feeds the inner "
        "width through both subgraph inputs; ids come out as outer:inner:node.",
        """
const pi = add('PrimitiveInt', [-300, 0]); set(pi, {value: 96, control_after_generate: 'fixed'});
const img = add('EmptyImage', [0, 0]); const inv = add('ImageInvert', [300, 0]);
const s = add('SaveImage', [600, 0]); set(s, {filename_prefix: 'nested'});
con(pi, 0, img, 'width'); con(img, 0, inv, 0); con(inv, 0, s, 'images');
const inner = subgraph([img, inv]);
subgraph([inner, s]);
return save();
""",
    ),
    "subgraph_promoted_widget": (
        "A subgraph whose input is linked to an inner widget but not linked outside (the value is "
        "the subgraph node's widget value, 77); a second instance of the same subgraph with "
        "another value; a subgraph output feeding a node outside.",
        """
const img = add('EmptyImage', [0, 0]); const inv = add('ImageInvert', [300, 0]);
const pi = add('PrimitiveInt', [-300, 0]); con(pi, 0, img, 'height'); con(img, 0, inv, 0);
const s = add('SaveImage', [600, 0]); con(inv, 0, s, 'images');
const sn = subgraph([img, inv]);
const l = sn.inputs.findIndex((i) => i.name === 'height');
sn.disconnectInput(l); g.remove(pi);
const sw = (sn.widgets || []).find((w) => w.name === 'height');
if (!sw) throw new Error('no promoted widget');
sw.value = 77;
const sn2 = LiteGraph.createNode(sn.type); sn2.pos = [0, 400]; g.add(sn2);
const sw2 = (sn2.widgets || []).find((w) => w.name === 'height');
if (sw2) sw2.value = 33;
const s2 = add('SaveImage', [600, 400]); con(sn2, 0, s2, 'images');
return save();
""",
    ),
    "subgraph_modes": (
        "Modes and subgraphs: a bypassed node inside a subgraph, a bypassed subgraph node, a muted "
        "subgraph node.",
        """
const mk = (y) => {
  const img = add('EmptyImage', [0, y]); const inv = add('ImageInvert', [300, y]);
  const inv2 = add('ImageInvert', [450, y]);
  const s = add('SaveImage', [700, y]);
  con(img, 0, inv, 0); con(inv, 0, inv2, 0); con(inv2, 0, s, 'images');
  return [img, inv, inv2, s];
};
const [a1, a2, a3] = mk(0); a2.mode = 4; subgraph([a1, a2, a3]);
const [b1, b2, b3, b4] = mk(400); const sb = subgraph([b2, b3]); sb.mode = 4;
const [c1, c2, c3, c4] = mk(800); const sc = subgraph([c2, c3]); sc.mode = 2;
return save();
""",
    ),
    "group_node": (
        "Legacy group node (extra.groupNodes, type 'workflow>ImgPipe') made with the frontend's "
        "ConvertSelectedNodesToGroupNode: EmptyImage + ImageInvert + ImageScale inside, a "
        "PrimitiveNode outside feeding a grouped widget, and a second instance.",
        """
const img = add('EmptyImage', [0, 0]); set(img, {width: 40, height: 30});
const inv = add('ImageInvert', [300, 0]); const sc = add('ImageScale', [500, 0]);
set(sc, {width: 20, height: 10, upscale_method: 'bilinear'});
con(img, 0, inv, 0); con(inv, 0, sc, 'image');
const s = add('SaveImage', [800, 0]); con(sc, 0, s, 'images');
const gn = await groupNode([img, inv, sc], 'ImgPipe');
const gn2 = LiteGraph.createNode('workflow>ImgPipe'); gn2.pos = [0, 400]; g.add(gn2);
const s2 = add('SaveImage', [800, 400]); con(gn2, 0, s2, 'images');
set(s2, {filename_prefix: 'group2'});
const p = add('PrimitiveNode', [-300, 400]);
const wi = gn2.inputs.findIndex((i) => i.widget && /width/.test(i.name));
if (wi >= 0) { p.connect(0, gn2, wi); p.widgets[0].value = 24; }
return save();
""",
    ),
    "group_node_modes": (
        "A bypassed group node and a group node containing a bypassed node.",
        """
const img = add('EmptyImage', [0, 0]); const inv = add('ImageInvert', [300, 0]);
const inv2 = add('ImageInvert', [450, 0]); inv2.mode = 4;
con(img, 0, inv, 0); con(inv, 0, inv2, 0);
const s = add('SaveImage', [800, 0]); con(inv2, 0, s, 'images');
await groupNode([inv, inv2], 'TwoInverts');
const img2 = add('EmptyImage', [0, 400]);
const gn2 = LiteGraph.createNode('workflow>TwoInverts'); gn2.pos = [300, 400]; g.add(gn2);
con(img2, 0, gn2, 0); gn2.mode = 4;
const s2 = add('SaveImage', [800, 400]); con(gn2, 0, s2, 'images');
return save();
""",
    ),
    "group_primitives_inside": (
        "PrimitiveNodes inside a group node, not exposed: one drives the width of EmptyImage "
        "and EmptyLatentImage, one the height of EmptyImage; a second instance whose primitive "
        "widgets are set on the group node.",
        """
const p1 = add('PrimitiveNode', [-300, 0]); const p2 = add('PrimitiveNode', [-300, 200]);
const img = add('EmptyImage', [0, 0]); const lat = add('EmptyLatentImage', [0, 300]);
con(p1, 0, img, 'width'); con(p1, 0, lat, 'width'); con(p2, 0, img, 'height');
p1.widgets[0].value = 40; p2.widgets[0].value = 24; set(lat, {batch_size: 2});
const inv = add('ImageInvert', [300, 0]); con(img, 0, inv, 0);
const s = add('SaveImage', [600, 0]); con(inv, 0, s, 'images');
const pa = add('PreviewAny', [300, 300]); con(lat, 0, pa, 'source');
await groupNode([p1, p2, img, lat], 'PrimSizes');
const gn2 = LiteGraph.createNode('workflow>PrimSizes'); gn2.pos = [0, 600]; g.add(gn2);
gn2.widgets[0].value = 72;
const s2 = add('SaveImage', [600, 600]); con(gn2, 'IMAGE', s2, 'images');
set(s2, {filename_prefix: 'second'});
return save();
""",
    ),
    "group_primitives_exposed": (
        "The issue's shape: a group named 'EmptyLatentImage' holding two PrimitiveNodes (width, "
        "height) that drive an EmptySD3LatentImage and also feed an EmptyImage outside, so the "
        "primitives' outputs are listed in `external` next to the LATENT.",
        """
const p1 = add('PrimitiveNode', [-300, 0]); const p2 = add('PrimitiveNode', [-300, 200]);
const lat = add('EmptySD3LatentImage', [0, 0]);
con(p1, 0, lat, 'width'); con(p2, 0, lat, 'height');
p1.widgets[0].value = 832; p2.widgets[0].value = 1216;
const img = add('EmptyImage', [300, 300]); con(p1, 0, img, 'width'); con(p2, 0, img, 'height');
const pa = add('PreviewAny', [300, 0]); con(lat, 0, pa, 'source');
const s = add('SaveImage', [600, 300]); con(img, 0, s, 'images');
await groupNode([p1, p2, lat], 'EmptyLatentImage');
return save();
""",
    ),
    "group_external_node_object": (
        "A group whose `external` entry names the inner node by a copy of the node object instead "
        "of its index (as some frontend versions saved it): built in the frontend, then the entry "
        "rewritten. The output it names is linked only outside the group.",
        """
const img = add('EmptyImage', [0, 0]); set(img, {width: 16, height: 8});
const inv = add('ImageInvert', [300, 0]); con(img, 0, inv, 0);
const s = add('SaveImage', [600, 0]); con(inv, 0, s, 'images');
await groupNode([img, inv], 'InvertPipe');
const wf = save();
const grp = wf.extra.groupNodes.InvertPipe;
grp.external = grp.external.map((e) => [JSON.parse(JSON.stringify(grp.nodes[e[0]])), e[1], e[2]]);
return wf;
""",
    ),
    "group_external_node_object_hidden": (
        "As group_external_node_object, but the rewritten entry names an output that is also "
        "linked inside the group, so the frontend no longer sees it as external.",
        """
const img = add('EmptyImage', [0, 0]); set(img, {width: 16, height: 8});
const inv = add('ImageInvert', [300, 0]); con(img, 0, inv, 0);
const s = add('SaveImage', [600, 0]); con(inv, 0, s, 'images');
const s2 = add('SaveImage', [600, 300]); con(img, 0, s2, 'images');
set(s2, {filename_prefix: 'plain'});
await groupNode([img, inv], 'InvertPipe');
const wf = save();
const grp = wf.extra.groupNodes.InvertPipe;
grp.external = grp.external.map((e) => [JSON.parse(JSON.stringify(grp.nodes[e[0]])), e[1], e[2]]);
return wf;
""",
    ),
    "group_reroutes": (
        "Reroutes as group members: one between two inner nodes, one at the end of the group "
        "feeding a node outside, one fed from outside the group.",
        """
const img = add('EmptyImage', [0, 0]); set(img, {width: 20, height: 12});
const r1 = add('Reroute', [250, 0]); const inv = add('ImageInvert', [350, 0]);
const r2 = add('Reroute', [550, 0]);
con(img, 0, r1, 0); con(r1, 0, inv, 0); con(inv, 0, r2, 0);
const s = add('SaveImage', [700, 0]); con(r2, 0, s, 'images');
const img2 = add('EmptyImage', [0, 300]); set(img2, {color: 255});
const r3 = add('Reroute', [250, 300]); const inv2 = add('ImageInvert', [350, 300]);
con(img2, 0, r3, 0); con(r3, 0, inv2, 0);
const s2 = add('SaveImage', [700, 300]); con(inv2, 0, s2, 'images');
set(s2, {filename_prefix: 'from_outside'});
await groupNode([img, r1, inv, r2, r3, inv2], 'Rerouted');
return save();
""",
    ),
    "group_converted_widgets": (
        "Widgets of inner nodes fed by links: from another inner node (PrimitiveInt inside -> "
        "EmptyImage.width), and from a node outside (PrimitiveInt outside -> ImageScale.height "
        "inside, linked to the group's widget input after grouping).",
        """
const pi = add('PrimitiveInt', [-300, 0]); set(pi, {value: 36, control_after_generate: 'fixed'});
const img = add('EmptyImage', [0, 0]); con(pi, 0, img, 'width');
const sc = add('ImageScale', [300, 0]); con(img, 0, sc, 'image');
set(sc, {width: 18, height: 9});
const s = add('SaveImage', [600, 0]); con(sc, 0, s, 'images');
const gn = await groupNode([pi, img, sc], 'ScaledImage');
const po = add('PrimitiveInt', [-300, 400]); set(po, {value: 11, control_after_generate: 'fixed'});
const hi = gn.inputs.findIndex((i) => i.widget && /ImageScale height|^height$/.test(i.name));
if (hi < 0) throw new Error('no height input on the group: ' + gn.inputs.map((i) => i.name));
po.connect(0, gn, hi);
return save();
""",
    ),
    "group_member_modes": (
        "Group members that are muted (an ImageInvert in the middle, a SaveImage at the end) or "
        "bypassed at the group's output; a bypassed node outside feeding the group.",
        """
const img = add('EmptyImage', [0, 0]); set(img, {width: 10});
const pre = add('ImageInvert', [150, 0]); pre.mode = 4; con(img, 0, pre, 0);
const a = add('ImageInvert', [300, 0]); const b = add('ImageInvert', [450, 0]);
const c = add('ImageInvert', [600, 0]); const sin = add('SaveImage', [600, 300]);
con(pre, 0, a, 0); con(a, 0, b, 0); con(b, 0, c, 0); con(a, 0, sin, 'images');
set(sin, {filename_prefix: 'inside'});
const s = add('SaveImage', [800, 0]); con(c, 0, s, 'images');
const gn = await groupNode([a, b, c, sin], 'ModePipe');
const inner = g.extra.groupNodes.ModePipe.nodes;
const idx = (t, k) => inner.map((n, i) => [n, i]).filter(([n]) => n.type === t)[k][1];
inner[idx('ImageInvert', 1)].mode = 2;
inner[idx('ImageInvert', 2)].mode = 4;
inner[idx('SaveImage', 0)].mode = 2;
return save();
""",
    ),
    "group_in_subgraph": (
        "A legacy group node placed inside a subgraph (the frontend refuses to queue it).",
        """
const img = add('EmptyImage', [0, 0]); const inv = add('ImageInvert', [300, 0]);
con(img, 0, inv, 0);
const s = add('SaveImage', [600, 0]);
const gn = await groupNode([img, inv], 'Inner');
con(gn, 0, s, 'images');
subgraph([gn, s]);
return save();
""",
    ),
    "group_chained": (
        "Two group nodes chained (the output of one feeds the other), and two instances of the "
        "second; the second group holds a seed widget (KSampler-style control names).",
        """
const img = add('EmptyImage', [0, 0]); set(img, {width: 30, height: 20});
const inv = add('ImageInvert', [300, 0]); con(img, 0, inv, 0);
const sc = add('ImageScale', [450, 0]); con(inv, 0, sc, 'image');
set(sc, {width: 15, height: 10});
const inv2 = add('ImageInvert', [600, 0]); con(sc, 0, inv2, 0);
const s = add('SaveImage', [800, 0]); con(inv2, 0, s, 'images');
const a = await groupNode([img, inv], 'First');
const b = await groupNode([sc, inv2], 'Second');
const b2 = LiteGraph.createNode('workflow>Second'); b2.pos = [450, 400]; g.add(b2);
con(a, 0, b2, 0); b2.widgets[1].value = 5;
const s2 = add('SaveImage', [800, 400]); con(b2, 0, s2, 'images');
set(s2, {filename_prefix: 'second_copy'});
return save();
""",
    ),
    "group_values_length": (
        "Group node instances whose own widgets_values is shorter (two values) or longer (two "
        "extra values) than the group's widgets; built in the frontend, then the lists edited.",
        """
const img = add('EmptyImage', [0, 0]); set(img, {width: 14, height: 6, color: 9});
const sc = add('ImageScale', [300, 0]); con(img, 0, sc, 'image');
set(sc, {width: 7, height: 3});
const s = add('SaveImage', [600, 0]); con(sc, 0, s, 'images');
const gn = await groupNode([img, sc], 'Sized');
const gn2 = LiteGraph.createNode('workflow>Sized'); gn2.pos = [0, 400]; g.add(gn2);
const s2 = add('SaveImage', [600, 400]); con(gn2, 0, s2, 'images');
set(s2, {filename_prefix: 'long'});
const wf = save();
const one = wf.nodes.find((n) => n.id === gn.id); one.widgets_values = [33, 22];
const two = wf.nodes.find((n) => n.id === gn2.id);
two.widgets_values = [...two.widgets_values, 99, 'extra'];
return wf;
""",
    ),
    "group_primitive_kinds": (
        "PrimitiveNodes inside a group with titles ('Size', and 'Mode' on a COMBO primitive "
        "feeding upscale_method of two ImageScale nodes), a FLOAT primitive (ImageBlend "
        "blend_factor: no control widget), and a Note inside the group.",
        """
const img = add('EmptyImage', [0, 0]); set(img, {height: 16});
const a = add('ImageScale', [300, 0]); const b = add('ImageScale', [300, 300]);
con(img, 0, a, 'image'); con(img, 0, b, 'image');
const size = add('PrimitiveNode', [-300, 0]); size.title = 'Size';
con(size, 0, img, 'width'); con(size, 0, a, 'width'); size.widgets[0].value = 48;
const mode = add('PrimitiveNode', [-300, 300]); mode.title = 'Mode';
con(mode, 0, a, 'upscale_method'); con(mode, 0, b, 'upscale_method');
mode.widgets[0].value = 'bicubic';
const bl = add('ImageBlend', [600, 0]); con(a, 0, bl, 'image1'); con(b, 0, bl, 'image2');
const f = add('PrimitiveNode', [300, 600]); con(f, 0, bl, 'blend_factor');
f.widgets[0].value = 0.25;
const note = add('Note', [0, 600]); note.widgets[0].value = 'inside the group';
const s = add('SaveImage', [900, 0]); con(bl, 0, s, 'images');
await groupNode([size, mode, f, note, img, a, b, bl], 'Kinds');
return save();
""",
    ),
    "group_reroute_widget": (
        "A Reroute inside a group that carries a widget value: PrimitiveInt -> Reroute -> "
        "EmptyImage.width, all three grouped.",
        """
const pi = add('PrimitiveInt', [-300, 0]); set(pi, {value: 26, control_after_generate: 'fixed'});
const r = add('Reroute', [-100, 0]); const img = add('EmptyImage', [0, 0]);
con(pi, 0, r, 0); con(r, 0, img, 'width');
const s = add('SaveImage', [300, 0]); con(img, 0, s, 'images');
await groupNode([pi, r, img], 'RerouteWidget');
return save();
""",
    ),
    "group_reroute_widget_outside": (
        "A Reroute inside a group that passes a widget value in from outside: PrimitiveInt "
        "(outside) -> Reroute -> EmptyImage.width (both grouped).",
        """
const pi = add('PrimitiveInt', [-300, 0]); set(pi, {value: 26, control_after_generate: 'fixed'});
const r = add('Reroute', [-100, 0]); const img = add('EmptyImage', [0, 0]);
con(pi, 0, r, 0); con(r, 0, img, 'width');
const s = add('SaveImage', [300, 0]); con(img, 0, s, 'images');
await groupNode([r, img], 'RerouteWidgetIn');
return save();
""",
    ),
    "group_primitive_stale_links": (
        "As group_primitives_inside, with the inner PrimitiveNodes' output link lists filled "
        "in (link ids of the root graph), as a hand-edited or older file may hold them.",
        """
const p1 = add('PrimitiveNode', [-300, 0]); const img = add('EmptyImage', [0, 0]);
con(p1, 0, img, 'width'); p1.widgets[0].value = 40;
const s = add('SaveImage', [600, 0]); con(img, 0, s, 'images');
await groupNode([p1, img], 'StaleLinks');
const wf = save();
const inner = wf.extra.groupNodes.StaleLinks.nodes[0];
inner.outputs[0].links = [wf.links[0][0]];
return wf;
""",
    ),
    "group_primitive_widget_linked": (
        "A group holding a PrimitiveNode (-> EmptyImage.width) whose group widget 'value' is "
        "linked after grouping from a PrimitiveInt outside: a linked group input the group "
        "does not number.",
        """
const p = add('PrimitiveNode', [-300, 0]); const img = add('EmptyImage', [0, 0]);
con(p, 0, img, 'width'); p.widgets[0].value = 40; set(img, {height: 12});
const s = add('SaveImage', [600, 0]); con(img, 0, s, 'images');
const gn = await groupNode([p, img], 'PrimLinked');
const po = add('PrimitiveInt', [-600, 0]); set(po, {value: 52, control_after_generate: 'fixed'});
const vi = gn.inputs.findIndex((i) => i.widget && i.name === 'value');
if (vi < 0) throw new Error('no value input on the group: ' + gn.inputs.map((i) => i.name));
po.connect(0, gn, vi);
return save();
""",
    ),
    "group_old_style_inputs": (
        "A group saved as frontends before widget sockets saved them: members list only their "
        "sockets, the instance only its linked widget input ('height', fed by a PrimitiveInt "
        "outside), so the group does not number it; built in the frontend, then the slot lists "
        "edited.",
        """
const img = add('EmptyImage', [0, 0]); set(img, {width: 20, height: 12});
const inv = add('ImageInvert', [300, 0]); con(img, 0, inv, 0);
const s = add('SaveImage', [600, 0]); con(inv, 0, s, 'images');
const gn = await groupNode([img, inv], 'OldStyle');
const po = add('PrimitiveInt', [-300, 0]); set(po, {value: 44, control_after_generate: 'fixed'});
const hi = gn.inputs.findIndex((i) => i.widget && i.name === 'height');
if (hi < 0) throw new Error('no height input on the group: ' + gn.inputs.map((i) => i.name));
po.connect(0, gn, hi);
const wf = save();
for (const n of wf.extra.groupNodes.OldStyle.nodes) {
  n.inputs = (n.inputs || []).filter((i) => !i.widget);
}
const inst = wf.nodes.find((n) => n.id === gn.id);
inst.inputs = inst.inputs.filter((i) => !i.widget || i.link != null);
inst.inputs.forEach((i, k) => {
  const l = wf.links.find((x) => x[0] === i.link); if (l) l[4] = k;
});
return wf;
""",
    ),
    "group_chained_plain": (
        "Two group nodes chained, with only INT widgets (no old-style combo, so newer "
        "frontends lay the values out alike): Source (EmptyImage, ImageInvert) feeds Crop "
        "(ImageInvert, ImageCrop) and a SaveImage; a second Crop instance with its own width.",
        """
const img = add('EmptyImage', [0, 0]); set(img, {width: 30, height: 20});
const inv = add('ImageInvert', [300, 0]); con(img, 0, inv, 0);
const inv2 = add('ImageInvert', [450, 0]); con(inv, 0, inv2, 0);
const cr = add('ImageCrop', [600, 0]); con(inv2, 0, cr, 'image');
set(cr, {width: 12, height: 8, x: 2, y: 1});
const s = add('SaveImage', [800, 0]); con(cr, 0, s, 'images');
const s0 = add('SaveImage', [450, 300]); con(inv, 0, s0, 'images');
set(s0, {filename_prefix: 'first'});
const a = await groupNode([img, inv], 'Source');
await groupNode([inv2, cr], 'Crop');
const b2 = LiteGraph.createNode('workflow>Crop'); b2.pos = [450, 600]; g.add(b2);
con(a, 0, b2, 0); set(b2, {width: 6});
const s2 = add('SaveImage', [800, 600]); con(b2, 0, s2, 'images');
set(s2, {filename_prefix: 'copy'});
return save();
""",
    ),
    "group_and_subgraphs": (
        "Subgraphs and a group node at the root together: a subgraph (EmptyImage, ImageInvert) "
        "feeds the group Between (ImageInvert, ImageCrop), whose output feeds another subgraph "
        "(ImageInvert, SaveImage).",
        _BETWEEN_SUBGRAPHS + "return save();\n",
    ),
    "group_subgraph_high_ids": (
        "As group_and_subgraphs, with the subgraphs' node ids moved up by 100, above the "
        "workflow's last node id (as a pasted subgraph may hold them): where the group's "
        "members are numbered from.",
        _BETWEEN_SUBGRAPHS + """const wf = save();
for (const sg of wf.definitions.subgraphs) {
  for (const n of sg.nodes) n.id += 100;
  for (const l of sg.links) {
    if (l.origin_id > 0) l.origin_id += 100;
    if (l.target_id > 0) l.target_id += 100;
  }
}
return wf;
""",
    ),
    "group_node_muted": (
        "A muted group node holding a whole chain (EmptyImage, ImageInvert, SaveImage) next to "
        "a plain chain.",
        """
const img = add('EmptyImage', [0, 0]); const inv = add('ImageInvert', [300, 0]);
const s = add('SaveImage', [600, 0]); con(img, 0, inv, 0); con(inv, 0, s, 'images');
const gn = await groupNode([img, inv, s], 'MutedPipe'); gn.mode = 2;
const img2 = add('EmptyImage', [0, 300]); set(img2, {width: 8, height: 8});
const s2 = add('SaveImage', [600, 300]); con(img2, 0, s2, 'images');
set(s2, {filename_prefix: 'plain'});
return save();
""",
    ),
    "group_without_members": (
        "A group node whose group definition lists no nodes (built in the frontend, then the "
        "definition emptied), its output linked to a SaveImage, next to a plain chain.",
        """
const img = add('EmptyImage', [0, 0]); const inv = add('ImageInvert', [300, 0]);
const s = add('SaveImage', [600, 0]); con(img, 0, inv, 0); con(inv, 0, s, 'images');
await groupNode([img, inv], 'Hollow');
const img2 = add('EmptyImage', [0, 300]); set(img2, {width: 8, height: 8});
const s2 = add('SaveImage', [600, 300]); con(img2, 0, s2, 'images');
set(s2, {filename_prefix: 'plain'});
const wf = save();
wf.extra.groupNodes.Hollow = {nodes: [], links: [], external: []};
return wf;
""",
    ),
    "group_primitive_after_target": (
        "A PrimitiveNode inside a group that comes after the widget it feeds in the group's "
        "member order (the frontend puts it first; built, then the two members swapped with "
        "the indexes in the group's links and external).",
        """
const img = add('EmptyImage', [0, 0]); set(img, {height: 14});
const p = add('PrimitiveNode', [-300, 0]); con(p, 0, img, 'width'); p.widgets[0].value = 30;
const s = add('SaveImage', [600, 0]); con(img, 0, s, 'images');
await groupNode([img, p], 'LatePrim');
const wf = save();
const grp = wf.extra.groupNodes.LatePrim;
if (grp.nodes.length !== 2) throw new Error('expected two members');
grp.nodes.reverse(); grp.nodes.forEach((n, i) => { n.index = i; });
const swap = (i) => (i === 0 ? 1 : i === 1 ? 0 : i);
for (const l of grp.links) { l[0] = swap(l[0]); l[2] = swap(l[2]); }
for (const e of grp.external) e[0] = swap(e[0]);
return wf;
""",
    ),
    "group_load_image": (
        "A group node holding LoadImage (example.png, with its upload widget) and ImageInvert, "
        "feeding a SaveImage outside.",
        """
const li = add('LoadImage', [0, 0]); set(li, {image: 'example.png'});
const inv = add('ImageInvert', [300, 0]); con(li, 0, inv, 0);
const s = add('SaveImage', [600, 0]); con(inv, 0, s, 'images');
await groupNode([li, inv], 'Loaded');
return save();
""",
    ),
    "group_primitive_socket": (
        "A PrimitiveNode inside a group whose only link goes to an input with no widget "
        "(KlingVideoExtendNode's forceInput STRING `video_id`).",
        """
const k = add('KlingVideoExtendNode', [0, 0]); set(k, {prompt: 'more', cfg_scale: 0.25});
const p = add('PrimitiveNode', [-300, 0]); con(p, 0, k, 'video_id');
p.widgets[0].value = 'vid-1';
await groupNode([p, k], 'Extend');
return save();
""",
    ),
    "group_primitive_socket_after": (
        "As group_primitive_socket, with the PrimitiveNode listed after the node it feeds "
        "(built, then the two members swapped with the indexes in the group's links and "
        "external).",
        """
const k = add('KlingVideoExtendNode', [0, 0]); set(k, {prompt: 'more', cfg_scale: 0.25});
const p = add('PrimitiveNode', [-300, 0]); con(p, 0, k, 'video_id');
p.widgets[0].value = 'vid-1';
await groupNode([p, k], 'ExtendLate');
const wf = save();
const grp = wf.extra.groupNodes.ExtendLate;
if (grp.nodes.length !== 2) throw new Error('expected two members');
grp.nodes.reverse(); grp.nodes.forEach((n, i) => { n.index = i; });
const swap = (i) => (i === 0 ? 1 : i === 1 ? 0 : i);
for (const l of grp.links) { l[0] = swap(l[0]); l[2] = swap(l[2]); }
for (const e of grp.external) e[0] = swap(e[0]);
return wf;
""",
    ),
    "widget_input_links": (
        "Widgets fed by links from real nodes (PrimitiveInt, PrimitiveFloat, PrimitiveString, "
        "PrimitiveBoolean, StringConcatenate) next to widgets left as values; a widget input "
        "whose link was removed keeps its widget value.",
        """
const pi = add('PrimitiveInt', [0, 0]); set(pi, {value: 48});
const pf = add('PrimitiveFloat', [0, 200]); set(pf, {value: 0.25});
const ps = add('PrimitiveString', [0, 400]); set(ps, {value: 'from_string'});
const pb = add('PrimitiveBoolean', [0, 600]); set(pb, {value: true});
const img = add('EmptyImage', [300, 0]); con(pi, 0, img, 'height'); set(img, {width: 20});
const img2 = add('EmptyImage', [300, 300]); set(img2, {width: 20, height: 48, color: 128});
const bl = add('ImageBlend', [600, 0]); con(img, 0, bl, 'image1'); con(img2, 0, bl, 'image2');
con(pf, 0, bl, 'blend_factor'); set(bl, {blend_mode: 'multiply'});
const cm = add('ImageCompositeMasked', [800, 0]); con(bl, 0, cm, 'destination');
con(img2, 0, cm, 'source'); con(pb, 0, cm, 'resize_source'); set(cm, {x: 3});
const cat = add('StringConcatenate', [300, 600]); set(cat, {string_b: '_b', delimiter: '-'});
con(ps, 0, cat, 'string_a');
const s = add('SaveImage', [1100, 0]); con(cm, 0, s, 'images'); con(cat, 0, s, 'filename_prefix');
const pi2 = add('PrimitiveInt', [0, 900]);
const l = con(pi2, 0, img2, 'batch_size');
img2.disconnectInput(img2.findInputSlot('batch_size')); g.remove(pi2);
set(img2, {batch_size: 2});
return save();
""",
    ),
    "load_media_upload": (
        "Loaders with upload-button widgets that carry no value: LoadImage, LoadImageMask "
        "(channel after image in input_order), LoadAudio, LoadVideo.",
        """
const li = add('LoadImage', [0, 0]); set(li, {image: 'example.png'});
const lm = add('LoadImageMask', [0, 400]); set(lm, {image: 'example.png', channel: 'red'});
const s = add('SaveImage', [400, 0]); con(li, 0, s, 'images');
const mi = add('MaskToImage', [300, 400]); con(lm, 0, mi, 0);
const s2 = add('PreviewImage', [500, 400]); con(mi, 0, s2, 'images');
const la = add('LoadAudio', [0, 800]); set(la, {audio: 'clip.wav'});
const sa = add('SaveAudio', [400, 800]); con(la, 0, sa, 'audio');
const lv = add('LoadVideo', [0, 1100]); set(lv, {file: 'clip.mp4'});
const sv = add('SaveVideo', [400, 1100]); con(lv, 0, sv, 'video');
return save();
""",
    ),
    "dynamic_prompts": (
        "Text widgets with dynamicPrompts: comments (// and /* */) and single-choice braces "
        "{cat} are rewritten by the frontend; a widget without dynamicPrompts keeps them. "
        "(Multi-choice {a|b} is random per conversion, so it is not recorded.)",
        """
const ck = add('CheckpointLoaderSimple', [0, 0]);
const t = add('CLIPTextEncode', [300, 0]); con(ck, 1, t, 'clip');
set(t, {text: 'a photo of a {cat}, // line comment\\nsharp /* block */ focus, \\\\{literal\\\\}'});
const z = add('ConditioningZeroOut', [600, 0]); con(t, 0, z, 0);
const ps = add('PrimitiveString', [0, 400]); set(ps, {value: 'keep // this {x}'});
const pa = add('PreviewAny', [300, 400]); con(ps, 0, pa, 'source');
const pa2 = add('PreviewAny', [900, 0]); con(z, 0, pa2, 'source');
return save();
""",
    ),
    "native_reroutes": (
        "Link midpoint reroutes of the new LiteGraph (extra.reroutes, links with parentId), which "
        "do not change the graph.",
        """
const img = add('EmptyImage', [0, 0]); const s = add('SaveImage', [700, 0]);
const link = con(img, 0, s, 'images');
const r = g.createReroute([350, 100], link);
const inv = add('ImageInvert', [300, 300]); const s2 = add('SaveImage', [700, 300]);
con(img, 0, inv, 0); const l2 = con(inv, 0, s2, 'images');
const rA = g.createReroute([500, 350], l2);
return save();
""",
    ),
    "primitive_through_reroute": (
        "A PrimitiveNode feeding a widget input through a Reroute, and a Reroute chain into a "
        "bypassed node.",
        """
const p = add('PrimitiveNode', [0, 0]); const r = add('Reroute', [200, 0]);
const img = add('EmptyImage', [400, 0]);
con(r, 0, img, 'width'); con(p, 0, r, 0);
if (p.widgets && p.widgets[0]) p.widgets[0].value = 56;
const r2 = add('Reroute', [600, 0]); const r3 = add('Reroute', [700, 0]);
const inv = add('ImageInvert', [800, 0]); inv.mode = 4;
const s = add('SaveImage', [1000, 0]);
con(img, 0, r2, 0); con(r2, 0, r3, 0); con(r3, 0, inv, 0); con(inv, 0, s, 'images');
return save();
""",
    ),
    "subgraph_virtual_inside": (
        "A subgraph holding virtual nodes (Reroute, Note) and a muted node next to real ones; a "
        "PrimitiveNode outside feeds an inner widget through a subgraph input. (The frontend "
        "cannot put a PrimitiveNode itself into a subgraph: convertToSubgraph throws.)",
        """
const img = add('EmptyImage', [0, 0]); const r = add('Reroute', [300, 0]);
const inv = add('ImageInvert', [450, 0]); const inv2 = add('ImageInvert', [450, 200]);
inv2.mode = 2;
const s = add('SaveImage', [700, 0]); const s2 = add('PreviewImage', [700, 200]);
const p = add('PrimitiveNode', [-300, 0]); con(p, 0, img, 'height');
p.widgets[0].value = 24;
const note = add('Note', [0, 300]); note.widgets[0].value = 'inside';
con(img, 0, r, 0); con(r, 0, inv, 0); con(r, 0, inv2, 0);
con(inv, 0, s, 'images'); con(inv2, 0, s2, 'images');
subgraph([img, r, inv, inv2, note]);
return save();
""",
    ),
    "notes_and_groups": (
        "Note and MarkdownNote nodes and a visual group (LGraphGroup) around nodes: none reach "
        "the API graph.",
        """
const n = add('Note', [0, 0]); n.widgets[0].value = 'a note';
const m = add('MarkdownNote', [0, 200]); m.widgets[0].value = '# title';
const img = add('EmptyImage', [300, 0]); const s = add('SaveImage', [600, 0]);
con(img, 0, s, 'images');
const grp = new LiteGraph.LGraphGroup('Group A'); grp.pos = [250, -50]; grp.size = [700, 300];
g.add(grp);
return save();
""",
    ),
}

# Files older frontends wrote (or broken ones) that today's frontend does not produce itself.
_IMG_OUT = {"localized_name": "IMAGE", "name": "IMAGE", "type": "IMAGE"}


def _legacy_converted_widgets() -> dict[str, Any]:
    """ComfyUI 2024 style: converted widgets as inputs with ``widget`` and no sockets else."""
    return {
        "last_node_id": 5, "last_link_id": 4,
        "nodes": [
            {"id": 1, "type": "EmptyImage", "pos": [0, 0], "size": [315, 130], "flags": {},
             "order": 1, "mode": 0,
             "inputs": [
                 {"name": "width", "type": "INT", "link": 2,
                  "widget": {"name": "width"}},
                 {"name": "height", "type": "INT", "link": None,
                  "widget": {"name": "height"}}],
             "outputs": [dict(_IMG_OUT, links=[1], slot_index=0)],
             "properties": {"Node name for S&R": "EmptyImage"},
             "widgets_values": [100, 60, 1, 0]},
            {"id": 2, "type": "SaveImage", "pos": [400, 0], "size": [315, 270], "flags": {},
             "order": 2, "mode": 0,
             "inputs": [{"name": "images", "type": "IMAGE", "link": 1}],
             "properties": {}, "widgets_values": ["legacy"]},
            {"id": 3, "type": "PrimitiveNode", "pos": [-300, 0], "size": [210, 82],
             "flags": {}, "order": 0, "mode": 0,
             "outputs": [{"name": "INT", "type": "INT", "links": [2, 3], "slot_index": 0,
                          "widget": {"name": "width"}}],
             "title": "width", "properties": {"Run widget replace on values": False},
             "widgets_values": [72, "fixed"]},
            {"id": 4, "type": "EmptyLatentImage", "pos": [0, 300], "size": [315, 106],
             "flags": {}, "order": 3, "mode": 0,
             "inputs": [{"name": "width", "type": "INT", "link": 3,
                         "widget": {"name": "width"}}],
             "outputs": [{"name": "LATENT", "type": "LATENT", "links": [4], "slot_index": 0}],
             "properties": {"Node name for S&R": "EmptyLatentImage"},
             "widgets_values": [512, 256, 1]},
            {"id": 5, "type": "PreviewAny", "pos": [400, 300], "size": [210, 80], "flags": {},
             "order": 4, "mode": 0,
             "inputs": [{"name": "source", "type": "*", "link": 4}],
             "properties": {}, "widgets_values": []},
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 3, 0, 1, 0, "INT"], [3, 3, 0, 4, 0, "INT"],
                  [4, 4, 0, 5, 0, "LATENT"]],
        "groups": [], "config": {}, "extra": {}, "version": 0.4,
    }


def _ksampler_node(node_id: int, values: list[Any], order: int) -> dict[str, Any]:
    return {"id": node_id, "type": "KSampler", "pos": [400, 300 * order], "size": [315, 262],
            "flags": {}, "order": order, "mode": 0,
            "inputs": [{"name": "model", "type": "MODEL", "link": None},
                       {"name": "positive", "type": "CONDITIONING", "link": None},
                       {"name": "negative", "type": "CONDITIONING", "link": None},
                       {"name": "latent_image", "type": "LATENT", "link": None}],
            "outputs": [{"name": "LATENT", "type": "LATENT", "links": [], "slot_index": 0}],
            "properties": {"Node name for S&R": "KSampler"}, "widgets_values": values}


def _legacy_widget_values() -> dict[str, Any]:
    """Odd widgets_values: no control value, floats for INT widgets, a dict, too many values."""
    return {
        "last_node_id": 6, "last_link_id": 0,
        "nodes": [
            _ksampler_node(1, [42, 20, 7.5, "euler", "normal", 1], 0),
            _ksampler_node(2, [42.0, "fixed", 20.0, 8, "euler", "karras", 0.5], 1),
            _ksampler_node(3, [1, "randomize", 4, 3.3333333333, "dpmpp_2m", "simple", 1, "x"], 2),
            {"id": 4, "type": "EmptyImage", "pos": [0, 0], "size": [315, 130], "flags": {},
             "order": 3, "mode": 0, "outputs": [dict(_IMG_OUT, links=[])],
             "properties": {},
             "widgets_values": {"width": 16, "height": 24, "batch_size": 1, "color": 5}},
            {"id": 5, "type": "EmptyImage", "pos": [0, 300], "size": [315, 130], "flags": {},
             "order": 4, "mode": 0, "outputs": [dict(_IMG_OUT, links=[])],
             "properties": {}, "widgets_values": [8]},
            {"id": 6, "type": "ImageInvert", "pos": [0, 600], "size": [315, 130], "flags": {},
             "order": 5, "mode": 0, "inputs": [{"name": "image", "type": "IMAGE", "link": None}],
             "outputs": [dict(_IMG_OUT, links=[])], "properties": {}},
        ],
        "links": [], "groups": [], "config": {}, "extra": {}, "version": 0.4,
    }


def _broken_links() -> dict[str, Any]:
    """A link whose origin node is missing, and one whose target disagrees with the input."""
    return {
        "last_node_id": 3, "last_link_id": 3,
        "nodes": [
            {"id": 1, "type": "EmptyImage", "pos": [0, 0], "size": [315, 130], "flags": {},
             "order": 0, "mode": 0, "outputs": [dict(_IMG_OUT, links=[1])],
             "properties": {}, "widgets_values": [64, 64, 1, 0]},
            {"id": 2, "type": "SaveImage", "pos": [400, 0], "size": [315, 270], "flags": {},
             "order": 1, "mode": 0,
             "inputs": [{"name": "images", "type": "IMAGE", "link": 2}],
             "properties": {}, "widgets_values": ["broken"]},
            {"id": 3, "type": "PreviewImage", "pos": [400, 300], "size": [315, 270],
             "flags": {}, "order": 2, "mode": 0,
             "inputs": [{"name": "images", "type": "IMAGE", "link": 3}],
             "properties": {}, "widgets_values": []},
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"], [3, 9, 0, 3, 0, "IMAGE"]],
        "groups": [], "config": {}, "extra": {}, "version": 0.4,
    }


def _unknown_node_type() -> dict[str, Any]:
    """A custom node ComfyUI does not have, between two core nodes."""
    return {
        "last_node_id": 3, "last_link_id": 2,
        "nodes": [
            {"id": 1, "type": "EmptyImage", "pos": [0, 0], "size": [315, 130], "flags": {},
             "order": 0, "mode": 0, "outputs": [dict(_IMG_OUT, links=[1])],
             "properties": {}, "widgets_values": [64, 64, 1, 0]},
            {"id": 2, "type": "SomeCustomUpscaler", "pos": [400, 0], "size": [315, 100],
             "flags": {}, "order": 1, "mode": 0,
             "inputs": [{"name": "image", "type": "IMAGE", "link": 1}],
             "outputs": [dict(_IMG_OUT, links=[2])],
             "properties": {"cnr_id": "comfyui-some-pack", "ver": "1.0.0"},
             "widgets_values": [2.0, "lanczos"]},
            {"id": 3, "type": "SaveImage", "pos": [800, 0], "size": [315, 270], "flags": {},
             "order": 2, "mode": 0,
             "inputs": [{"name": "images", "type": "IMAGE", "link": 2}],
             "properties": {}, "widgets_values": ["custom"]},
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]],
        "groups": [], "config": {}, "extra": {}, "version": 0.4,
    }


LEGACY: dict[str, tuple[str, Any]] = {
    "legacy_converted_widgets": (
        "2024-style converted widgets: inputs with 'widget' (one linked from a PrimitiveNode "
        "feeding two nodes, one unlinked) and only the converted widgets listed as inputs.",
        _legacy_converted_widgets,
    ),
    "legacy_widget_values": (
        "widgets_values without the control_after_generate value, INT values written as "
        "floats, extra trailing values, a dict instead of a list, too few values.",
        _legacy_widget_values,
    ),
    "broken_links": (
        "A link from a node id that does not exist (and a node whose output lists no links).",
        _broken_links,
    ),
    "unknown_node_type": (
        "A custom node type that this ComfyUI does not have (class_type comes out null).",
        _unknown_node_type,
    ),
}


async def build(comfyui_url: str, names: list[str]) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    made: dict[str, Any] = {}
    async with async_playwright() as pw:
        browser, page = await open_frontend(comfyui_url, pw)
        try:
            for name in names:
                js = "async () => {" + PRELUDE + CASES[name][1] + "}"
                try:
                    made[name] = await page.evaluate(js)
                except Exception as exc:  # one broken case must not stop the others
                    log.error("case %s failed in the frontend: %s", name, str(exc)[:500])
                    continue
                log.info("built %s: %d nodes", name, len(made[name].get("nodes", [])))
        finally:
            await browser.close()
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui-url", default="http://127.0.0.1:8188")
    parser.add_argument("--out", type=Path, default=HERE / "handmade")
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    wanted = set(args.only) if args.only else None
    names = [n for n in CASES if wanted is None or n in wanted]
    workflows = asyncio.run(build(args.comfyui_url.rstrip("/"), names)) if names else {}
    for name, (_, make) in LEGACY.items():
        if wanted is None or name in wanted:
            workflows[name] = make()

    args.out.mkdir(parents=True, exist_ok=True)
    for name, wf in workflows.items():
        (args.out / f"{name}.json").write_text(json.dumps(wf, indent=1) + "\n", encoding="utf-8")
    lines = ["# Hand-made workflows", "",
             "Written by `make_handmade.py`; recorded by `record_frontend.py` as "
             "`recordings/handmade_<name>.json`.", ""]
    for name, (what, _) in CASES.items():
        lines.append(f"- `{name}` (built in the frontend): {what}")
    for name, (what, _) in LEGACY.items():
        lines.append(f"- `{name}` (written by hand, older or broken format): {what}")
    (args.out / "CASES.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(workflows)} workflows -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
