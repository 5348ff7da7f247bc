# tests/plugins: extra sources and link flags per suite (a plain list of assignments).
check_bpe_tokenizer_EXTRA := plugins/bpe_tokenizer/bpe.c
check_bpe_tokenizer_LIBS := -lcjson -lutf8proc -lpcre2-8
