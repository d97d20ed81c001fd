<?php
// Calls an undefined function: PHP fatal error. Nothing is printed first, so
// the response is "Status: 500 Internal Server Error" with an empty body and
// the error message on the FastCGI STDERR stream.
fcgi_testkit_undefined_function();
