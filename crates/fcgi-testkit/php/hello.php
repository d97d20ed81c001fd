<?php
// Body: exactly "Hello, World!" (no newline), Content-Type: text/plain.
header('Content-Type: text/plain');
echo 'Hello, World!';
