//! FastCGI client.
