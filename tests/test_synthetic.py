"""Synthetic dishes: deterministic, exact volumes, masks consistent with depth, sane noise."""
import cv2
import numpy as np
import pytest

from pipeline.data.shapes import Camera, Plane, render_full
from pipeline.data.synthetic import Dish, dish_scene, generate_dish

W, H = 160, 120


@pytest.fixture(scope="module")
def dishes() -> list[Dish]:
    return [generate_dish(3, i, W, H) for i in range(8)]


def _world_points(d: Dish) -> np.ndarray:
    """Back-project depth_clean to world coordinates with the pose stored in meta."""
    u, v = np.meshgrid(np.arange(d.depth.shape[1]), np.arange(d.depth.shape[0]))
    pc = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(d.K).T * d.depth_clean[..., None]
    R, t = np.array(d.meta["R"]), np.array(d.meta["t"])
    return (pc - t) @ R


def test_deterministic():
    a, b = generate_dish(7, 2, W, H), generate_dish(7, 2, W, H)
    for f in ("rgb", "depth", "depth_clean", "mask", "items", "K"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    assert a.volume_ml_true == b.volume_ml_true and a.meta == b.meta
    c = generate_dish(7, 3, W, H)
    assert not np.array_equal(a.rgb, c.rgb) and a.volume_ml_true != c.volume_ml_true


def test_ring_px_comes_from_the_params():
    """`volume.ring_px` (the floor ring table views keep around the food) is an argument whose
    default is the config's: a wider ring raises some cameras, never the scene or its volume."""
    from pipeline.config import VolumeConfig

    base = [generate_dish(0, i, 96, 72, family="table") for i in range(6)]
    same = generate_dish(0, 4, 96, 72, family="table", ring_px=VolumeConfig().ring_px)
    assert np.array_equal(same.rgb, base[4].rgb) and same.meta == base[4].meta
    wide = [generate_dish(0, i, 96, 72, family="table", ring_px=60) for i in range(6)]
    els = [(w.meta["elevation_deg"], b.meta["elevation_deg"]) for w, b in zip(wide, base)]
    assert all(e_w >= e_b for e_w, e_b in els) and any(e_w > e_b for e_w, e_b in els)
    assert [w.volume_ml_true for w in wide] == [b.volume_ml_true for b in base]


def test_fields_and_intrinsics(dishes):
    for d in dishes:
        assert d.rgb.shape == (H, W, 3) and d.rgb.dtype == np.uint8
        assert d.depth.shape == d.depth_clean.shape == d.mask.shape == d.items.shape == (H, W)
        assert d.depth.dtype == d.depth_clean.dtype == np.float32
        assert d.mask.dtype == bool and d.items.dtype == np.int16
        K = d.K
        assert K.shape == (3, 3) and np.allclose(K[2], [0, 0, 1]) and K[0, 1] == 0
        assert 0.6 * W < K[0, 0] < 1.2 * W and K[0, 0] == K[1, 1]
        assert abs(K[0, 2] - (W - 1) / 2) < 0.05 * W and abs(K[1, 2] - (H - 1) / 2) < 0.05 * H
        assert 45 <= d.meta["elevation_deg"] <= 90 and 0.2 <= d.meta["distance_m"] <= 0.5
        assert d.meta["vessel"] in ("plate", "bowl")
        assert (d.depth_clean > 0).all()  # the table fills every pixel


def test_volumes_exact_and_items(dishes):
    for d in dishes:
        n = len(d.item_volumes_ml)
        assert 1 <= n <= 4 and len(d.item_kinds) == n
        assert d.volume_ml_true == pytest.approx(sum(d.item_volumes_ml), rel=1e-12)
        assert set(np.unique(d.items[d.mask])) <= set(range(1, n + 1))
        assert ((d.items > 0) == d.mask).all()
        assert d.mask.sum() > 50
        sc = dish_scene(d.meta["seed"], d.meta["index"])
        shapes_ml = sum(s.volume_m3 for it in sc.food for s in it) * 1e6
        assert shapes_ml == pytest.approx(d.volume_ml_true, rel=1e-12)


@pytest.mark.parametrize("index", [0, 1, 2, 5])
def test_scene_volume_by_ray_casting(index):
    # a near-orthographic top-down render of the food on the floor plane integrates to
    # the analytic total: items are exact and don't overlap
    sc = dish_scene(3, index)
    D, f = 20.0, 20000.0  # 1 mm pixels
    cam = Camera.look_at(90, 0, D, target=(0, 0, sc.floor_z), f_px=f, width=240, height=240)
    food = [s for it in sc.food for s in it]
    depth, label, _ = render_full(food + [Plane(sc.floor_z)], cam)
    m = label < len(food)
    z = depth[m]
    vol_ml = ((D ** 3 - z ** 3) / (3 * f * f)).sum() * 1e6
    total = sum(s.volume_m3 for s in food) * 1e6
    assert vol_ml == pytest.approx(total, rel=0.01)


def test_mask_consistent_with_depth(dishes):
    fractions = []
    for d in dishes:
        P = _world_points(d)
        floor = d.meta["floor_z_m"]
        assert (P[..., 2][d.mask] > floor - 1e-6).all()         # food is above the support
        assert np.median(P[..., 2][d.mask] - floor) > 0.002
        ring = cv2.dilate(d.mask.astype(np.uint8), np.ones((11, 11), np.uint8)).astype(bool)
        ring &= ~d.mask
        fractions.append(np.mean(np.abs(P[..., 2][ring] - floor) < 1e-6))
    # a ring of flat floor surrounds the food (small misses: tall food at grazing views)
    assert np.mean(fractions) > 0.95 and min(fractions) > 0.8


def test_noise_holes_and_quantisation(dishes):
    for d in dishes:
        assert np.isfinite(d.depth).all() and (d.depth >= 0).all()
        holes = d.depth == 0
        assert holes.any() and holes.mean() < 0.2
        units = d.depth / 1e-4
        assert np.allclose(units, np.round(units), atol=1e-2)
        valid = ~holes
        err = np.abs(d.depth[valid] - d.depth_clean[valid])
        assert np.median(err) < 0.003 and err.max() < 0.05
    clean = generate_dish(3, 0, W, H, noise=False)
    assert np.array_equal(clean.depth, clean.depth_clean)


def test_geometry_independent_of_resolution():
    a, b = generate_dish(5, 4, 64, 48, noise=False), generate_dish(5, 4, W, H, noise=False)
    assert a.volume_ml_true == b.volume_ml_true
    assert a.meta["elevation_deg"] == b.meta["elevation_deg"]
    assert a.item_kinds == b.item_kinds


def test_volume_distribution_covers_all_bins():
    vols = [sum(s.volume_m3 for it in dish_scene(0, i).food for s in it) * 1e6 for i in range(80)]
    counts = np.histogram(vols, [0, 100, 300, 600, np.inf])[0]
    assert (counts >= 4).all(), counts
    assert 25 <= min(vols) and max(vols) < 1500


def test_bad_size():
    with pytest.raises(ValueError, match="width/height"):
        generate_dish(0, 0, 16, 16)


# --------------------------------------------------------------------------- rig families
from pipeline.data.scene import FAMILIES, PART, family_of  # noqa: E402
from pipeline.data.shapes import Frustum  # noqa: E402

RIG = [f for f in FAMILIES if f != "table"]


@pytest.fixture(scope="module")
def rig() -> dict[str, list[Dish]]:
    """Two dishes of each rig family (indices 0, 1 drawn as that family)."""
    return {f: [generate_dish(4, i, W, H, family=f) for i in range(2)] for f in RIG}


def test_family_mixture():
    weights = {"table": 0.4, "platform": 0.15, "rails": 0.15, "deep_bowl": 0.15, "metal": 0.15}
    fams = [family_of(0, i, weights) for i in range(600)]
    assert fams == [family_of(0, i, weights) for i in range(600)]
    share = {f: fams.count(f) / len(fams) for f in FAMILIES}
    for f, w in weights.items():
        assert abs(share[f] - w) < 0.06, share
    assert family_of(0, 5, None) == "table" and family_of(0, 5, {"metal": 1.0}) == "metal"
    # table dishes of a mixture are the dishes of the table-only data set
    i = fams.index("table")
    a, b = generate_dish(0, i, W, H, families=weights), generate_dish(0, i, W, H)
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.depth, b.depth)
    with pytest.raises(ValueError, match="data.families"):
        family_of(0, 0, {"tabel": 1.0})


@pytest.mark.parametrize("family", RIG)
def test_family_deterministic_and_exact(family, rig):
    a = generate_dish(4, 0, W, H, family=family)
    b = rig[family][0]
    for f in ("rgb", "depth", "depth_clean", "mask", "items", "parts", "K"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    for d in rig[family]:
        assert d.meta["scene"] == family and d.mask.sum() > 50
        sc = dish_scene(4, d.meta["index"], family=family)
        shapes_ml = sum(s.volume_m3 for it in sc.food for s in it) * 1e6
        assert d.volume_ml_true == pytest.approx(shapes_ml, rel=1e-12)
        assert ((d.parts == PART["food"]) == d.mask).all()
        # the rig camera looks (nearly) straight down from ~0.41 m above the bench
        assert d.meta["elevation_deg"] >= 84 and 0.3 < d.meta["distance_m"] <= 0.5
        # exact volume by point sampling the food solids (one jittered point per 2 mm voxel,
        # unbiased): the analytic total, and items don't overlap
        food = [s for it in sc.food for s in it]
        lo, hi = np.min([s.bounds()[0] for s in food], 0), np.max([s.bounds()[1] for s in food], 0)
        g = 0.002
        axes = [np.arange(lo[k], hi[k], g) for k in range(3)]
        P = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
        P += np.random.default_rng(0).uniform(0, g, P.shape)
        n_in = np.sum([s.contains(P) for s in food], axis=0)
        assert (n_in <= 1).mean() > 0.9999
        assert (n_in > 0).sum() * g ** 3 * 1e6 == pytest.approx(shapes_ml, rel=0.02)


def test_one_rig_one_platform(rig):
    """A data set is one rig: every rig dish of a seed stands on the same platform height (the
    real release's dishes do), and another seed draws another rig."""
    from pipeline.data.scene import rig_platform_z

    heights = {d.meta["platform_z_m"] for f in RIG for d in rig[f]}
    assert heights == {rig_platform_z(4)} and 0.045 <= rig_platform_z(4) <= 0.055
    assert len({rig_platform_z(s) for s in range(5)}) == 5


def test_platform_step_and_edge(rig):
    for d in rig["platform"] + rig["rails"] + rig["metal"]:
        surf, plat = d.parts == PART["surface"], d.parts == PART["platform"]
        assert surf.sum() > 100 and plat.sum() > 100  # the platform edge is in view
        assert d.meta["platform_z_m"] == pytest.approx(0.05, abs=0.006)
        z = _world_points(d)[..., 2]  # height above the bench, from the clean depth
        # a clear platform top is seen by the camera, but the depth reads the bench below it
        glass = d.meta["platform_glass"]
        assert np.median(z[plat]) == pytest.approx(0.0 if glass else d.meta["platform_z_m"], abs=1e-4)
        # the dish stands ~5 cm above what the depth shows around it
        around = surf | plat if glass else plat
        step = np.median(z[d.parts == PART["vessel_floor"]]) - np.median(z[around])
        assert step == pytest.approx(d.meta["floor_z_m"] - (0 if glass else d.meta["platform_z_m"]),
                                     abs=1e-4)
        if glass:
            assert 0.045 < step < 0.075
        seen = np.median(d.depth_clean[surf]) - np.median(d.depth_clean[d.parts == PART["vessel_floor"]])
        assert 0.035 < seen < 0.09, seen  # the camera is tilted by <= 6 degrees
        # the surface beyond the edge reaches the image border (top and bottom)
        assert surf[0].any() and surf[-1].any()
        assert 0.395 <= d.meta["distance_m"] + d.meta["floor_z_m"] <= 0.6


def test_stereo_shadow_left_of_raised_objects(rig):
    for d in rig["platform"]:
        z = d.depth_clean
        # pixels just left / right of a step up of >= 3 cm (a nearer object beside them)
        left = np.zeros_like(d.mask)
        right = np.zeros_like(d.mask)
        left[:, :-1] = z[:, :-1] - z[:, 1:] > 0.03
        right[:, 1:] = z[:, 1:] - z[:, :-1] > 0.03
        assert left.sum() > 20 and right.sum() > 20
        holes = d.depth == 0
        assert holes[left].mean() > 0.95 and holes[right].mean() < 0.8


def test_rails_and_cable_touch_border(rig):
    for d in rig["rails"]:
        rail, cable = d.parts == PART["rail"], d.parts == PART["cable"]
        assert rail[0].any() and rail[-1].any()  # rails run across the image
        border = np.zeros_like(cable)
        border[[0, -1]] = border[:, [0, -1]] = True
        assert (cable & border).any() and cable.sum() > 5
        assert d.meta["n_rails"] >= 1 and d.meta["cable"]


def test_deep_bowl_floor_hidden(rig):
    for d in rig["deep_bowl"]:
        assert d.meta["vessel"] == "deep_bowl"
        assert not (d.parts == PART["vessel_floor"]).any()   # no pixel of the floor in view
        sc = dish_scene(4, d.meta["index"], family="deep_bowl")
        fill = sc.food[0]
        assert all(isinstance(s, Frustum) for s in fill) and sc.kinds[0] == "fill"
        # the food layer follows the wall: at every height its radius is the bowl's
        zs = np.array([s.z0 for s in fill] + [fill[-1].z0 + fill[-1].height]) - sc.floor_z
        walls = sc.vessel_shapes[1:]
        prof_z = np.array([w.z0 for w in walls] + [walls[-1].z0 + walls[-1].height]) - sc.floor_z
        prof_r = np.array([w.r_in0 for w in walls] + [walls[-1].r_in1])
        radii = np.array([s.r0 for s in fill] + [fill[-1].r1])
        assert np.allclose(radii, np.interp(zs, prof_z, prof_r), atol=1e-9)
        # the bowl fills most of the frame, food sits deep inside it
        assert (d.parts == PART["vessel"]).mean() > 0.25


def test_metal_holes(rig):
    for d in rig["metal"] + rig["deep_bowl"]:
        metal = np.isin(d.parts, [PART["vessel"], PART["vessel_floor"]])
        frac = (d.depth[metal] == 0).mean()
        assert 0.22 < frac < 0.45, frac
        assert d.meta["metal_hole_fraction"] == pytest.approx(frac, abs=0.06)
        if d.meta["scene"] == "metal":  # the matte platform: only the sensor's usual holes
            plat = d.parts == PART["platform"]
            assert (d.depth[plat] == 0).mean() < 0.5 * frac
    clean = generate_dish(4, 0, W, H, noise=False, family="metal")
    assert np.array_equal(clean.depth, clean.depth_clean)
