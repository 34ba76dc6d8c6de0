"""The torch-free core: shapes, catalogue, estimate, throughput, plan and config. Importing it never imports torch."""
