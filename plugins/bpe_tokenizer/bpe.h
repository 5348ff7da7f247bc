/* plugins/bpe_tokenizer/bpe.h - GPT-NeoX-20B byte-level BPE (HF tokenizers
 * "tokenizer.json", model BPE, normalizer NFC, pre-tokenizer/decoder
 * ByteLevel without prefix space), encode and streaming decode.
 *
 * Encoding follows HF tokenizers exactly (see shared/data/tokenizer/SOURCE.md):
 *   1. the text must be valid UTF-8 (else OMNI_EINVAL "invalid UTF-8 at byte N");
 *   2. added tokens with normalized=false (the specials <|endoftext|>,
 *      <|padding|>, [PAD]) split the raw text, leftmost-longest;
 *   3. each remaining piece is NFC-normalised, then added tokens with
 *      normalized=true (runs of 2..24 spaces, <|soi|> ...) split it;
 *   4. the rest is split by GPT-2's regex, each split's bytes are mapped to
 *      GPT-2's byte-level characters and merged by rank (lowest first,
 *      leftmost on ties), and the merged symbols are vocabulary ids.
 * No BOS/EOS is added.
 *
 * Decoding maps ids to their token strings, each string back to bytes
 * (GPT-2's unicode->byte table; a string with a character outside the table,
 * like a run of plain spaces, contributes its own UTF-8 bytes), and turns the
 * byte stream into text replacing each maximal ill-formed subsequence with
 * U+FFFD, as HF does with String::from_utf8_lossy. The streaming decoder
 * carries an incomplete UTF-8 sequence across calls so that the concatenated
 * pieces equal the whole-sequence decode.
 *
 * A loaded tokenizer is immutable: share it between threads freely. */
#ifndef OMNI_BPE_H
#define OMNI_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "omni/status.h"

struct omni_bpe;

/* Growable byte string, always NUL-terminated when data != NULL. */
struct omni_bpe_str {
    char *data;
    size_t len, cap;
};
/* Growable id list. */
struct omni_bpe_ids {
    int32_t *data;
    size_t len, cap;
};
void omni_bpe_str_free(struct omni_bpe_str *s);
void omni_bpe_ids_free(struct omni_bpe_ids *v);

/* Load a tokenizer.json. omnimamba != 0 adds OmniMamba's run-time tokens:
 * [PAD] = 50277 (special) then <|soi|> <|eoi|> <|sot|> <|eot|> <|t2i|>
 * <|mmu|> <|soc|> <|eoc|> <|lvg|> = 50278..50286 (not special).
 * Errors name the file: OMNI_EIO (unreadable), OMNI_EFORMAT (bad JSON or
 * not a BPE tokenizer). (transfer full: omni_bpe_free) */
int omni_bpe_load(struct omni_bpe **out, const char *path, int omnimamba, struct omni_error *err);
void omni_bpe_free(struct omni_bpe *t);

/* Number of ids (50277, or 50287 with omnimamba). */
int32_t omni_bpe_n_ids(const struct omni_bpe *t);
/* Token string of an id as stored in tokenizer.json ("\xc4\xa0world" for
 * " world"), or an added token's content; NULL when out of range.
 * (transfer none) */
const char *omni_bpe_token(const struct omni_bpe *t, int32_t id, size_t *len);
/* Id of a token string (vocabulary or added token), -1 when unknown. */
int32_t omni_bpe_token_id(const struct omni_bpe *t, const char *s, size_t len);
int omni_bpe_is_special(const struct omni_bpe *t, int32_t id);

/* Append the ids of text[0..len) to out. */
int omni_bpe_encode(const struct omni_bpe *t, const char *text, size_t len,
                    struct omni_bpe_ids *out, struct omni_error *err);

/* Streaming decoder state: an incomplete UTF-8 sequence (at most 3 bytes). */
struct omni_bpe_stream {
    uint8_t carry[4];
    uint8_t n;      /* bytes in carry */
    uint8_t need;   /* continuation bytes still expected */
    uint8_t lo, hi; /* allowed range of the next continuation byte */
};
void omni_bpe_stream_init(struct omni_bpe_stream *s);
/* Decode ids and append the text of every character completed so far to out;
 * bytes of an unfinished character stay in s. skip_special drops the special
 * tokens. OMNI_ERANGE names an id outside 0..n_ids-1 and its position. */
int omni_bpe_stream_feed(const struct omni_bpe *t, struct omni_bpe_stream *s,
                         const int32_t *ids, size_t n, int skip_special,
                         struct omni_bpe_str *out, struct omni_error *err);
/* End of the sequence: an unfinished character becomes U+FFFD. */
int omni_bpe_stream_flush(struct omni_bpe_stream *s, struct omni_bpe_str *out,
                          struct omni_error *err);
/* Whole-sequence decode (feed + flush), appended to out. */
int omni_bpe_decode(const struct omni_bpe *t, const int32_t *ids, size_t n, int skip_special,
                    struct omni_bpe_str *out, struct omni_error *err);

/* Check that s[0..len) is well-formed UTF-8; on failure, *bad_at is the
 * byte offset where the ill-formed sequence starts. Returns 1 when valid. */
int omni_bpe_utf8_valid(const char *s, size_t len, size_t *bad_at);

#endif
