<?php
// Shared by the test scripts (required, never requested itself).

// Writes $n bytes of the test pattern, 64 KiB per echo, flushing each.
// Pattern: byte i = (i * 31 + 7) % 251 (period 251), the same bytes as
// fcgi_testkit::pattern(N).
function write_pattern(int $n): void
{
    $cycle = '';
    for ($i = 0; $i < 251; $i++) {
        $cycle .= chr(($i * 31 + 7) % 251);
    }
    $block = str_repeat($cycle, intdiv(65536, 251) + 2);
    $pos = 0;
    while ($pos < $n) {
        $len = min(65536, $n - $pos);
        echo substr($block, $pos % 251, $len);
        $pos += $len;
        flush();
    }
}

// Reads php://input in 64 KiB chunks (never the whole body at once);
// returns [length, sha256 hex].
function hash_input(): array
{
    $in = fopen('php://input', 'rb');
    $ctx = hash_init('sha256');
    $len = 0;
    while (($chunk = fread($in, 65536)) !== false && $chunk !== '') {
        $len += strlen($chunk);
        hash_update($ctx, $chunk);
    }
    fclose($in);
    return [$len, hash_final($ctx)];
}
