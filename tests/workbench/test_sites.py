import pytest

from workbench.sites import Site, SiteError, parse_site, sites, tl_hook_name


def test_parse_canonical_and_heads():
    assert parse_site("resid_post.12") == Site("resid_post", 12)
    assert parse_site("z.3.h5") == Site("z", 3, 5)
    assert parse_site(("mlp_out", 2)) == Site("mlp_out", 2)
    assert str(Site("q", 1, 2)) == "q.1.h2"
    assert Site("z", 3, 5).whole == Site("z", 3)


def test_tl_aliases_round_trip():
    for kind in ["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "q", "k", "v", "z", "pattern"]:
        s = Site(kind, 4)
        assert parse_site(tl_hook_name(s)) == s
    assert parse_site("blocks.4.attn.hook_result") == Site("head_out", 4)


def test_unknown_site_suggests_close_matches():
    with pytest.raises(SiteError, match=r"resid_post\.3"):
        parse_site("resid_psot.3")
    with pytest.raises(SiteError, match="mlp_out"):
        Site("mlp_outt", 1)
    with pytest.raises(SiteError, match="Valid kinds"):
        parse_site("banana")


def test_heads_only_on_head_sites():
    with pytest.raises(SiteError, match="no heads"):
        Site("resid_post", 1, 2)
    with pytest.raises(SiteError, match="'z.0'"):
        parse_site("z[0]")


def test_sites_helper_and_order():
    ss = sites("resid_post", range(3))
    assert [s.layer for s in ss] == [0, 1, 2]
    assert Site("resid_pre", 2).order_key < Site("z", 2).order_key < Site("resid_post", 2).order_key < Site("resid_pre", 3).order_key


def test_model_checks_layer_and_head_range(tiny_model):
    m = tiny_model("llama")
    with pytest.raises(SiteError, match=r"layer 7 is out of range .*\(2 layers: 0\.\.1\)"):
        m.check_site("resid_post.7")
    with pytest.raises(SiteError, match=r"head 2 is out of range for k .*\(2 heads: 0\.\.1\)"):
        m.check_site("k.0.h2")  # 2 KV heads under grouped-query attention
    assert m.check_site("q.0.h3") == Site("q", 0, 3)
    assert m.check_site("resid_post.-1") == Site("resid_post", 1)


def test_parallel_residual_has_no_resid_mid(tiny_model):
    m = tiny_model("neox")
    with pytest.raises(SiteError, match="parallel residual"):
        m.check_site("resid_mid.0")
    assert all(s.kind != "resid_mid" for s in m.all_sites())
