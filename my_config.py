"""Your overrides of the defaults in config.py.

Set any field of ``config.Settings`` here in UPPER_CASE; everything left out keeps its default. Environment
variables ``GSV_<NAME>`` override this file, and command-line flags override both. Examples:

    PORT = 9900
    DEVICE = "cuda"               # auto | cpu | cuda | cuda:1
    PRECISION = "bf16"            # auto | fp32 | fp16 | bf16
    PRETRAINED_DIR = "D:/GPT-SoVITS/GPT_SoVITS/pretrained_models"
    BERT_DIR = "D:/GPT-SoVITS/GPT_SoVITS/pretrained_models/chinese-roberta-wwm-ext-large"
    USER_DICT_PATH = "my_pinyin.txt"
"""
