# plugins/bpe_tokenizer: JSON (tokenizer.json), NFC (utf8proc), the pre-tokenizer regex (PCRE2).
omni_bpe_tokenizer_LIBS := -lcjson -lutf8proc -lpcre2-8
