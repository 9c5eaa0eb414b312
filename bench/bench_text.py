"""Benchmark of the text front end: normalisation + g2p (no BERT) of a fixed ~1000-character Chinese paragraph.

Runs on one CPU thread (thread pools limited before numpy/torch load) with the pypinyin path (no G2PW) and no
user dictionary, so that the figure only depends on our code and the pinned libraries. The first call (library
loading, jieba dictionary) is timed separately; then N calls of ``text_to_phones`` on the whole paragraph and,
for comparison, of ``preprocess_text`` (split with cut5 + one call per piece, as the engine does).

    .venv/bin/python bench/bench_text.py            # 20 runs
    .venv/bin/python bench/bench_text.py --runs 50 --version v1

Target: well under one second per paragraph.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# A fixed paragraph: numbers, dates, money, percentages, polyphones, tone sandhi, some English.
PARAGRAPH = (
    "小镇的清晨总是从面包店的香味开始的。老板老周每天凌晨四点就起床和面，他说做面包和做人一样，急不得也慢不得。"
    "2023年3月15日，他的店迎来了开业十周年，当天卖出了1280个面包，营业额达到￥15,600元，比去年同期增长了23.5%。"
    "镇上的孩子们上学前都会绕到店门口看一眼刚出炉的牛角包，有时候老周会偷偷塞给他们一块边角料。"
    "到了中午，店里来的多是附近工地上的工人，他们一次买好几个大馒头，就着咸菜吃得津津有味。"
    "下午的客人最杂：有拄着拐杖的老奶奶，有背着画板的大学生，也有开着小货车路过的司机。"
    "老周记得每个熟客的口味，谁喜欢甜一点，谁不吃葱花，他都记在一个旧本子上。"
    "那个本子的封皮已经磨得发白，里面的字却一笔一画写得工工整整。"
    "傍晚的时候，老周会把卖不完的面包装进纸袋，送到街角的养老院，院长说老人们最盼着这一口。"
    "有人问老周为什么不多开几家分店，他摇摇头说：“一家店就够忙的了，心放在一个地方，面包才会好吃。”"
    "后来镇上修了新路，来了连锁超市，也开了网红咖啡馆，还有人在店门口直播，说这是全网最有味道的Bakery。"
    "可老周的面包店依旧每天早上6:30准时开门，门口的队伍也从来没有短过。"
    "有一年冬天下了很大的雪，气温降到-15°C，路都封了，老周还是踩着没过脚踝的积雪把面包送到了养老院。"
    "那天晚上，院里的老人们给他唱了一首歌，歌词很简单，调子也有些跑，可老周说那是他这辈子听过最好听的歌。"
    "直到现在，每当有人提起那场大雪，镇上的人还会说起这件事，说起那个满身是雪却笑得像孩子一样的面包师傅。"
    "而老周只是摆摆手，转身回到烤箱前，继续揉他的面团，仿佛什么都没有发生过一样。"
    "他的电话是13812345678，地址是幸福路88号，营业时间从早上六点半到晚上九点，周一休息。"
    "如果你路过这个小镇，不妨进去尝一尝他做的红豆面包，一个只要3.5元，据说已经卖了整整二十年，价格一直没有变过。"
    "老周常说，好的面包不需要广告，闻着香味来的人，自然会再来第二次、第三次。"
    "去年秋天，一位从上海来的游客在网上写了一篇长文，说自己在这里吃到了小时候的味道，文章的阅读量很快超过了10万。"
    "从那以后，每到周末，总有人专程开车两三个小时赶来，只为买一袋刚出炉的面包，再和老周聊上几句。"
    "老周不太会用手机，订单都是他的孙女帮忙处理的，她说爷爷最大的愿望，就是有一天能把这门手艺教给愿意学的年轻人。"
)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--version", default="v2")
    parser.add_argument("--lang", default="zh", choices=("zh", "all_zh", "auto"))
    args = parser.parse_args()

    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass

    from gsv_core.text import preprocess_text, text_to_phones

    options = {"user_dict": None, "use_g2pw": False}
    t0 = time.perf_counter()
    first = text_to_phones(PARAGRAPH, args.lang, args.version, **options)
    cold = time.perf_counter() - t0

    whole, pieces = [], []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        text_to_phones(PARAGRAPH, args.lang, args.version, **options)
        whole.append(time.perf_counter() - t0)
    for _ in range(args.runs):
        t0 = time.perf_counter()
        out = preprocess_text(PARAGRAPH, args.lang, args.version, "cut5", **options)
        pieces.append(time.perf_counter() - t0)

    print(f"text frontend benchmark ({platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"1 thread, {args.lang}/{args.version}, no G2PW, {args.runs} runs)")
    print(f"paragraph: {len(PARAGRAPH)} characters -> {len(first.phones)} phones, {len(first.segments)} segments")
    print(f"first call (loads libraries and dictionaries): {cold * 1000:8.1f} ms")
    for name, values in (("text_to_phones, whole paragraph", whole), (f"preprocess_text cut5 ({len(out)} pieces)", pieces)):
        print(f"{name:40s} median {statistics.median(values) * 1000:8.1f} ms   p90 {_percentile(values, 0.9) * 1000:8.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
